/* dlm.h — C interface of dlm, a runtime for diffusion language models (LLaDA, Dream).
 *
 * Link the static library target/<profile>/libdlm.a with -lpthread -ldl -lm (or the shared
 * libdlm.so). Hand-written; tests/c_abi.rs fails when this header and the library drift.
 *
 * Conventions
 * - Functions return an int status: DLM_OK (0) or one of the codes below; the message of the
 *   last failure on the calling thread is dlm_last_error().
 * - Handles are opaque. A dlm_model is read-only and may be shared by threads. A dlm_session
 *   is used by one thread at a time (a concurrent call gets DLM_ERR_BUSY).
 * - Every pointer is checked for NULL, every string for UTF-8, every length for limits, and no
 *   Rust panic crosses into C (it becomes DLM_ERR_PANIC).
 * - Using a handle after it was freed is undefined behaviour. The tag check inside (which
 *   makes many such calls return DLM_ERR_INVALID_HANDLE, and a second _free do nothing) is
 *   a debugging aid, not a guarantee: once the allocator reuses the address for a new handle,
 *   the stale pointer IS the new handle and calls on it act on the new object.
 */
#ifndef DLM_H
#define DLM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. */
enum dlm_status {
    DLM_OK = 0,
    DLM_ERR_NULL = 1,             /* a required pointer argument is NULL */
    DLM_ERR_INVALID_ARG = 2,      /* an argument or parameter out of range, a bad request */
    DLM_ERR_UTF8 = 3,             /* a string argument is not valid UTF-8 */
    DLM_ERR_IO = 4,               /* the model file cannot be read */
    DLM_ERR_FORMAT = 5,           /* the model file is malformed */
    DLM_ERR_UNSUPPORTED = 6,      /* the file or request needs what this build cannot do */
    DLM_ERR_BUFFER_TOO_SMALL = 7, /* output buffer too small; the needed size was written */
    DLM_CANCELLED = 8,            /* the step callback returned nonzero */
    DLM_ERR_PANIC = 9,            /* a bug inside dlm; see dlm_last_error() */
    DLM_ERR_TOKENIZER = 10,       /* text cannot be tokenized or an id cannot be decoded */
    DLM_ERR_INVALID_HANDLE = 11,  /* not a live handle of that type (freed, wrong type) */
    DLM_ERR_BUSY = 12,            /* the session is in use by another call */
    DLM_ERR_OUT_OF_MEMORY = 13,   /* a buffer the file or request needs cannot be allocated */
    DLM_ERR_CORRUPT = 14          /* corrupt weights: a checksum fails, NaN/Inf norm weights */
};

/* Position choice rules (dlm_params.algorithm). By default the first two run LLaDA's block
 * schedule, the others Dream's timestep schedule (dlm_params.schedule overrides). */
enum dlm_algorithm {
    DLM_ALG_LOW_CONFIDENCE = 0,
    DLM_ALG_RANDOM = 1,
    DLM_ALG_ORIGIN = 2,
    DLM_ALG_MASKGIT_PLUS = 3,
    DLM_ALG_TOPK_MARGIN = 4,
    DLM_ALG_ENTROPY = 5
};

/* KV cache between steps (dlm_params.cache). */
enum dlm_cache {
    DLM_CACHE_NONE = 0,
    DLM_CACHE_PREFIX = 1,
    DLM_CACHE_DUAL = 2,
    DLM_CACHE_ELASTIC = 3
};

/* Step schedules (dlm_params.schedule). DEFAULT takes the algorithm's own; TIMESTEPS runs in
 * Fast-dLLM's blocks when a block length or a cache is given. */
enum dlm_schedule {
    DLM_SCHEDULE_DEFAULT = 0,
    DLM_SCHEDULE_BLOCKS = 1,
    DLM_SCHEDULE_TIMESTEPS = 2
};

/* The layout version of dlm_params in this header. Fields are only ever appended, and each
 * version is longer than the one before; the library reads struct_size bytes and keeps its
 * defaults for fields an older caller lacks. */
enum { DLM_PARAMS_VERSION = 5 };

/* The most token ids one call accepts. */
#define DLM_MAX_IDS ((size_t)1 << 24)

/* A loaded model: read-only, shareable across threads. */
typedef struct dlm_model dlm_model;
/* One generation state bound to a model; one thread at a time. */
typedef struct dlm_session dlm_session;

/* Every knob of `dlm run`. Fill with dlm_params_default(model, &p, sizeof p), then change
 * fields. */
typedef struct dlm_params {
    uint32_t struct_size;  /* sizeof(dlm_params) the caller compiled; set by dlm_params_default */
    uint32_t version;      /* DLM_PARAMS_VERSION; set by dlm_params_default */
    int algorithm;         /* enum dlm_algorithm */
    int cache;             /* enum dlm_cache */
    uint32_t steps;        /* denoising steps (an upper bound under threshold/factor) */
    uint32_t gen_length;   /* tokens to generate after the prompt */
    uint32_t block_length; /* semi-autoregressive block length; 0 = one block */
    uint32_t top_k;        /* sample among the k most likely; 0 = off */
    double threshold;      /* Fast-dLLM confidence threshold in (0, 1]; 0 = off */
    double factor;         /* Fast-dLLM factor rule; 0 = off */
    double temperature;    /* 0 = greedy */
    double top_p;          /* nucleus sampling in (0, 1]; 0 or 1 = off */
    double cfg_scale;      /* classifier-free guidance; 0 = off (cache none only) */
    double alg_temp;       /* Dream: temperature of the position choice; 0 = off */
    double eps;            /* Dream: last timestep, in (0, 1) */
    uint64_t seed;         /* seed of every random choice */
    int stop_early;        /* nonzero: stop once the answer is final (same answer) */
    int chat;              /* nonzero: wrap a text prompt in the model's chat template */
    int schedule;          /* enum dlm_schedule (version 2) */
    uint32_t elastic_window;  /* elastic cache: masks whose queries a step computes (v3) */
    double elastic_gamma;     /* elastic cache: refresh below this similarity, [0, 1] (v3) */
    uint32_t elastic_track;   /* elastic cache: tracked most-attended tokens per layer (v3) */
    int elastic_block_cache;  /* elastic cache: nonzero refreshes at block starts (v3) */
    uint32_t min_per_step;    /* with a threshold: fewest commits a step; 0 = at least one (v4) */
    uint32_t reserved0;       /* always 0: makes version 5 longer than version 4 (v5) */
    int elastic_prefix_refresh; /* elastic cache with elastic_block_cache: nonzero opens later
                                   blocks over the text and the block only, the masks beyond
                                   stay cached (v5) */
} dlm_params;

/* Called after every step: the whole canvas (len ids: prompt_len prompt ids, then the
 * generated region), the masks left in the generated region, the step index from 0, and
 * user_data. The canvas is valid only during the call. Return nonzero to cancel. The session
 * is busy during the call: calling dlm_* on it from here gets DLM_ERR_BUSY. */
typedef int (*dlm_step_callback)(const uint32_t *canvas, size_t len, size_t prompt_len,
                                 size_t masks_left, size_t step, void *user_data);

/* The library version ("0.1.0"); a static string. */
const char *dlm_version(void);

/* The message of the last failed call on this thread ("" if none). Valid until the next
 * failing call on this thread; successful calls leave it unchanged. */
const char *dlm_last_error(void);

/* Open a .dlm file; *out is the new model, or NULL on failure. Norm weights that are NaN or
 * infinite are DLM_ERR_CORRUPT (checked on every open; they are tiny). */
int dlm_model_open(const char *path, dlm_model **out);

/* Flags of dlm_model_open_verified. */
#define DLM_OPEN_VERIFY 1u /* check every tensor against its checksum (reads the whole file) */

/* dlm_model_open with flags (0 or DLM_OPEN_VERIFY); corrupt data gives DLM_ERR_CORRUPT,
 * unknown flag bits DLM_ERR_INVALID_ARG. */
int dlm_model_open_verified(const char *path, uint32_t flags, dlm_model **out);

/* Open a .dlm file on a device: "cpu" (also when NULL), "cuda" or "cuda:N" (a library built
 * with the cuda feature, on a machine with an NVIDIA driver and GPU; otherwise an error that
 * names what is missing). */
int dlm_model_open_on(const char *path, const char *device, dlm_model **out);

/* Free a model (NULL: no-op). Sessions made from it stay usable. */
void dlm_model_free(dlm_model *model);

/* Token ids of UTF-8 text (no BOS/EOS added; special tokens written in the text match).
 * *n_out gets the count; if it exceeds cap, nothing is written to ids and the status is
 * DLM_ERR_BUFFER_TOO_SMALL (ids may be NULL with cap 0 to ask for the size). */
int dlm_tokenize(const dlm_model *model, const char *text, uint32_t *ids, size_t cap,
                 size_t *n_out);

/* The UTF-8 text of n ids (special tokens included) and a NUL into buf of cap bytes.
 * *len_out gets the length without the NUL; if cap < *len_out + 1, nothing is written and the
 * status is DLM_ERR_BUFFER_TOO_SMALL. Unknown ids: DLM_ERR_TOKENIZER. */
int dlm_detokenize(const dlm_model *model, const uint32_t *ids, size_t n, char *buf,
                   size_t cap, size_t *len_out);

/* The model's decoding defaults into out, a dlm_params of size bytes (pass sizeof *out);
 * chat is set when the model has a chat template, struct_size and version are set. */
int dlm_params_default(const dlm_model *model, dlm_params *out, size_t size);

/* A new session on model; *out is the session, or NULL on failure. It keeps the model's data
 * alive, so the model may be freed first. */
int dlm_session_new(const dlm_model *model, dlm_session **out);

/* Free a session and its output (NULL: no-op). */
void dlm_session_free(dlm_session *session);

/* Generate an answer to a UTF-8 prompt. params NULL: the model's defaults. callback may be
 * NULL. On DLM_CANCELLED or any error the session's output is empty. */
int dlm_generate(dlm_session *session, const char *prompt, const dlm_params *params,
                 dlm_step_callback callback, void *user_data);

/* Generate from n prompt ids (no chat template; params->chat is ignored). */
int dlm_generate_ids(dlm_session *session, const uint32_t *ids, size_t n,
                     const dlm_params *params, dlm_step_callback callback, void *user_data);

/* The answer text of the last generation (to the first stop token, without special tokens);
 * "" when there is none. Valid until the next generate on the session or its free. NULL for
 * an invalid or busy session (see dlm_last_error()). */
const char *dlm_session_text(const dlm_session *session);

/* The whole canvas of the last generation (prompt ids, then generated ids including stop and
 * pad tokens); NULL and 0 when there is none. Valid as dlm_session_text. */
int dlm_session_output_ids(const dlm_session *session, const uint32_t **ids, size_t *n);

/* Forward passes made by the last generation (0 when there is none). */
int dlm_session_nfe(const dlm_session *session, size_t *nfe);

/* Length of the prompt at the start of the last output's canvas (0 when there is none). */
int dlm_session_prompt_len(const dlm_session *session, size_t *prompt_len);

#ifdef __cplusplus
}
#endif

#endif /* DLM_H */
