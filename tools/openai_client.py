#!/usr/bin/env python3
"""Talk to `dlm serve` with the official `openai` Python client: list the models, one chat
answer, one streamed chat answer, one completion, and a rejected request.

How to run (the client lives in a virtual environment outside the repository):

    python3 -m venv /tmp/openai-venv && /tmp/openai-venv/bin/pip install openai
    cargo run --release -- serve --port 8080 &        # the demo model
    /tmp/openai-venv/bin/python tools/openai_client.py [http://127.0.0.1:8080/v1]

Exits non-zero when an answer is not what the demo model gives.
"""

import sys

import openai

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080/v1"
client = openai.OpenAI(base_url=base, api_key="unused")

models = [m.id for m in client.models.list()]
print("models:", models)

messages = [{"role": "user", "content": "Sort: 42 7 93 15"}]
r = client.chat.completions.create(model="any-name", messages=messages, max_tokens=32)
print("chat:", repr(r.choices[0].message.content), r.choices[0].finish_reason, r.usage)
assert r.choices[0].message.content == "7 15 42 93"

pieces = []
stream = client.chat.completions.create(
    model="any-name",
    messages=messages,
    max_tokens=32,
    stream=True,
    stream_options={"include_usage": True},
    extra_body={"block_length": 8, "seed": 1},
)
usage = None
for chunk in stream:
    if chunk.usage:
        usage = chunk.usage
    for c in chunk.choices:
        if c.delta.content:
            pieces.append(c.delta.content)
print("stream pieces:", pieces, "usage:", usage)
assert "".join(pieces) == "7 15 42 93"

c = client.completions.create(model="any-name", prompt="Sort: 3 1 2", max_tokens=8)
print("completion:", repr(c.choices[0].text), c.usage)

try:
    client.chat.completions.create(model="x", messages=messages, max_tokens=100000)
    sys.exit("a request over the limit was accepted")
except openai.BadRequestError as e:
    print("rejected:", e.status_code, e.body["message"] if isinstance(e.body, dict) else e.body)
print("ok")
