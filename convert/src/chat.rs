//! Reduces a Jinja chat template to literal pieces around each message: the template is
//! rendered (with Hugging Face's Jinja settings) on conversations whose contents are sentinels,
//! the output is cut at the sentinels, and the pieces are checked to re-assemble every render
//! exactly. The runtime then needs no template engine.

use minijinja::{Environment, Error, ErrorKind, Value, context};

/// Sentinel contents: no whitespace (so `| trim` leaves them alone), nothing a template emits.
const S_SYS: &str = "\u{E000}DLM_SYSTEM\u{E001}";
const S_U1: &str = "\u{E000}DLM_USER_1\u{E001}";
const S_A1: &str = "\u{E000}DLM_ASSISTANT_1\u{E001}";
const S_U2: &str = "\u{E000}DLM_USER_2\u{E001}";

pub use dlm_formats::chat::{ChatPieces, Role};

/// A chat template compiled with Hugging Face's Jinja settings, plus its special-token texts.
pub struct Template {
    env: Environment<'static>,
    bos: String,
    eos: String,
}

impl Template {
    /// Compile `source`; `bos`/`eos` are the texts `bos_token`/`eos_token` render as.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        // transformers compiles chat templates with trim_blocks and lstrip_blocks.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // A chat template runs a handful of loops over a few messages. Bounding the
        // instructions and the nesting turns a runaway template into an error instead of a
        // hang (or an abort), in well under a second.
        env.set_fuel(Some(MAX_FUEL));
        env.set_recursion_limit(MAX_RECURSION);
        env.add_function("raise_exception", |msg: String| -> Result<Value, Error> {
            Err(Error::new(ErrorKind::InvalidOperation, msg))
        });
        env.add_template_owned("chat", source.to_string())
            .map_err(|e| format!("does not compile: {e:#}"))?;
        Ok(Template {
            env,
            bos: bos.to_string(),
            eos: eos.to_string(),
        })
    }

    /// Render `messages` the way `apply_chat_template` does.
    pub fn render(
        &self,
        messages: &[(Role, &str)],
        add_generation_prompt: bool,
    ) -> Result<String, String> {
        let msgs: Vec<Value> = messages
            .iter()
            .map(|(r, c)| context! { role => r.name(), content => *c })
            .collect();
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| format!("{e:#}"))?;
        let mut out = Bounded::default();
        tmpl.render_captured_to(
            context! {
                messages => msgs,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos.as_str(),
                eos_token => self.eos.as_str(),
            },
            &mut out,
        )
        .map_err(|e| {
            if out.overflowed {
                format!("renders more than {MAX_OUTPUT} bytes for a short conversation")
            } else if e.kind() == ErrorKind::OutOfFuel {
                format!("does not finish within {MAX_FUEL} steps for a short conversation")
            } else {
                format!("does not render: {e:#}")
            }
        })?;
        String::from_utf8(out.bytes).map_err(|_| "renders invalid UTF-8".to_string())
    }
}

/// Instructions one render may run (real templates use a few thousand).
const MAX_FUEL: u64 = 2_000_000;
/// Nesting depth of macro calls and includes.
const MAX_RECURSION: usize = 64;
/// Bytes one render may produce (real ones are a few hundred).
const MAX_OUTPUT: usize = 1 << 20;

/// A render's output, refusing to grow past [`MAX_OUTPUT`].
#[derive(Default)]
struct Bounded {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_OUTPUT {
            self.overflowed = true;
            return Err(std::io::Error::other("chat template output too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Cut `text` at `sentinels` (each exactly once, in order): the n+1 pieces around them.
fn cut<'a>(text: &'a str, sentinels: &[&str], what: &str) -> Result<Vec<&'a str>, String> {
    let mut pieces = Vec::with_capacity(sentinels.len() + 1);
    let mut rest = text;
    for s in sentinels {
        if text.matches(s).count() != 1 {
            return Err(format!(
                "{what}: a message content appears {} times, not once",
                text.matches(s).count()
            ));
        }
        let at = rest
            .find(s)
            .ok_or_else(|| format!("{what}: messages are not rendered in order"))?;
        pieces.push(&rest[..at]);
        rest = &rest[at + s.len()..];
    }
    pieces.push(rest);
    Ok(pieces)
}

fn strip_prefix<'a>(s: &'a str, p: &str, what: &str) -> Result<&'a str, String> {
    s.strip_prefix(p)
        .ok_or_else(|| format!("{what}: {s:?} does not start with {p:?}"))
}

fn strip_suffix<'a>(s: &'a str, p: &str, what: &str) -> Result<&'a str, String> {
    s.strip_suffix(p)
        .ok_or_else(|| format!("{what}: {s:?} does not end with {p:?}"))
}

/// Reduce `tmpl` to pieces, and check that they re-assemble its renders exactly.
pub fn reduce(tmpl: &Template) -> Result<ChatPieces, String> {
    use Role::{Assistant as A, System as S, User as U};
    let full = [(S, S_SYS), (U, S_U1), (A, S_A1), (U, S_U2)];
    let r1 = tmpl.render(&full, false)?;
    let r2 = tmpl.render(&full, true)?;
    let r3 = tmpl.render(&full[1..3], false)?;
    let generation_prompt = strip_prefix(&r2, &r1, "generation prompt")?.to_string();
    if generation_prompt.is_empty() {
        return Err(
            "add_generation_prompt changes nothing; cannot find the generation prompt".into(),
        );
    }
    // r1 = P ⟨S⟩ sys_suf+user_pre ⟨U1⟩ user_suf+asst_pre ⟨A1⟩ asst_suf+user_pre ⟨U2⟩ user_suf
    let seg = cut(&r1, &[S_SYS, S_U1, S_A1, S_U2], "system conversation")?;
    // r3 = X+user_pre ⟨U1⟩ user_suf+asst_pre ⟨A1⟩ asst_suf
    let t = cut(&r3, &[S_U1, S_A1], "conversation without system")?;
    let user_suffix = seg[4];
    let assistant_prefix = strip_prefix(seg[2], user_suffix, "assistant prefix")?;
    let assistant_suffix = t[2];
    let user_prefix = strip_prefix(seg[3], assistant_suffix, "user prefix")?;
    let system_suffix = strip_suffix(seg[1], user_prefix, "system suffix")?;
    let before_sys = seg[0]; // prefix + system_prefix
    let x = strip_suffix(t[0], user_prefix, "text before the first user message")?;
    let (prefix, system_prefix, default) = if let Some(sp) = before_sys.strip_prefix(x) {
        // No default system message: what comes before the first user message is the prefix.
        (x, sp, "")
    } else {
        // x = prefix + system_prefix + default + system_suffix.
        let inner = strip_suffix(x, system_suffix, "default system message")?;
        let default = strip_prefix(inner, before_sys, "default system message")?;
        let prefix = if !tmpl.bos.is_empty() && before_sys.starts_with(&tmpl.bos) {
            &tmpl.bos[..]
        } else {
            ""
        };
        (prefix, &before_sys[prefix.len()..], default)
    };
    let padded = "  \u{E000}DLM_PAD\u{E001}  ";
    let trimmed = tmpl.render(&[(U, padded)], false)?;
    let trim_content = !trimmed.contains(padded);
    let pieces = ChatPieces {
        prefix: prefix.into(),
        system_prefix: system_prefix.into(),
        system_suffix: system_suffix.into(),
        user_prefix: user_prefix.into(),
        user_suffix: user_suffix.into(),
        assistant_prefix: assistant_prefix.into(),
        assistant_suffix: assistant_suffix.into(),
        generation_prompt,
        default_system: default.into(),
        trim_content,
    };
    verify(tmpl, &pieces)?;
    Ok(pieces)
}

/// Check the pieces against the template on conversations with and without a system message,
/// with and without the generation prompt, and with padded contents.
pub fn verify(tmpl: &Template, pieces: &ChatPieces) -> Result<(), String> {
    use Role::{Assistant as A, System as S, User as U};
    let convs: [&[(Role, &str)]; 5] = [
        &[
            (S, "Be brief."),
            (U, "Hi there"),
            (A, "Hello!"),
            (U, "What is 2+2?"),
        ],
        &[(U, "Hi there"), (A, "Hello!"), (U, "What is 2+2?")],
        &[(U, "  padded\n"), (A, " reply "), (U, "\tmore ")],
        &[(S, " sys "), (U, "one")],
        &[(U, "only")],
    ];
    for conv in convs {
        for gp in [false, true] {
            let want = tmpl.render(conv, gp)?;
            let got = pieces.assemble(conv, gp);
            if want != got {
                return Err(format!(
                    "pieces do not re-assemble the template's output for {conv:?} (generation prompt {gp}): template {want:?}, pieces {got:?}"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";
    const CHATML: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    #[test]
    fn llama3_reduces() {
        let t = Template::new(LLAMA3, "<|begin_of_text|>", "<|end_of_text|>").unwrap();
        let p = reduce(&t).unwrap();
        assert_eq!(p.prefix, "<|begin_of_text|>");
        assert_eq!(
            p.user_prefix,
            "<|start_header_id|>user<|end_header_id|>\n\n"
        );
        assert_eq!(p.user_suffix, "<|eot_id|>");
        assert_eq!(
            p.generation_prompt,
            "<|start_header_id|>assistant<|end_header_id|>\n\n"
        );
        assert_eq!(p.default_system, "");
        assert!(p.trim_content);
    }

    #[test]
    fn chatml_reduces_with_default_system() {
        let t = Template::new(CHATML, "", "<|endoftext|>").unwrap();
        let p = reduce(&t).unwrap();
        assert_eq!(p.default_system, "You are a helpful assistant.");
        assert_eq!(p.prefix, "");
        assert_eq!(p.system_prefix, "<|im_start|>system\n");
        assert_eq!(p.assistant_suffix, "<|im_end|>\n");
        assert_eq!(p.generation_prompt, "<|im_start|>assistant\n");
        assert!(!p.trim_content);
    }

    #[test]
    fn templates_that_cannot_be_reduced_are_errors() {
        let no_gp =
            "{% for m in messages %}{{ m['role'] + ':' + m['content'] + '\n' }}{% endfor %}";
        let e = reduce(&Template::new(no_gp, "", "").unwrap()).unwrap_err();
        assert!(e.contains("generation prompt"), "{e}");
        let raising = "{{ raise_exception('no system allowed') }}";
        let e = reduce(&Template::new(raising, "", "").unwrap()).unwrap_err();
        assert!(e.contains("no system allowed"), "{e}");
        assert!(Template::new("{% for %}", "", "").is_err());
    }

    #[test]
    fn runaway_templates_are_bounded_errors() {
        let t0 = std::time::Instant::now();
        // Nested loops: 10^15 iterations unbounded.
        let nested = "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}x{% endfor %}{% endfor %}{% endfor %}";
        let e = reduce(&Template::new(nested, "", "").unwrap()).unwrap_err();
        assert!(e.contains("steps") || e.contains("bytes"), "{e}");
        // Huge output from few instructions.
        let big = "{% for a in range(100000) %}{{ 'y' * 1000 }}{% endfor %}";
        let e = reduce(&Template::new(big, "", "").unwrap()).unwrap_err();
        assert!(e.contains("bytes"), "{e}");
        // Unbounded recursion.
        let rec = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
        assert!(reduce(&Template::new(rec, "", "").unwrap()).is_err());
        assert!(t0.elapsed().as_secs() < 20, "{:?}", t0.elapsed());
    }
}
