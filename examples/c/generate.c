/* generate.c — answer one prompt with dlm from C.
 *
 *   cc examples/c/generate.c -Iinclude target/release/libdlm.a -lpthread -ldl -lm -o generate
 *   ./generate model.dlm "Sort: 5 3 9 1" [gen_length]
 *
 * Prints the progress (masks left after each step) to stderr and the answer to stdout. */
#include <stdio.h>
#include <stdlib.h>

#include "dlm.h"

static int on_step(const uint32_t *canvas, size_t len, size_t prompt_len, size_t masks_left,
                   size_t step, void *user_data) {
    (void)canvas;
    (void)user_data;
    fprintf(stderr, "step %zu: %zu masks left of %zu\n", step, masks_left, len - prompt_len);
    return 0; /* nonzero would cancel */
}

static int fail(const char *what, int status) {
    fprintf(stderr, "%s failed (%d): %s\n", what, status, dlm_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.dlm [PROMPT] [GEN_LENGTH]\n", argv[0]);
        return 2;
    }
    const char *prompt = argc > 2 ? argv[2] : "Hello";

    dlm_model *model = NULL;
    int st = dlm_model_open(argv[1], &model);
    if (st != DLM_OK) return fail("dlm_model_open", st);

    dlm_params params;
    dlm_params_default(model, &params, sizeof params);
    if (argc > 3) {
        params.gen_length = (uint32_t)strtoul(argv[3], NULL, 10);
        params.steps = params.gen_length;
        params.block_length = 0; /* one block */
    }

    dlm_session *session = NULL;
    st = dlm_session_new(model, &session);
    if (st != DLM_OK) {
        dlm_model_free(model);
        return fail("dlm_session_new", st);
    }

    st = dlm_generate(session, prompt, &params, on_step, NULL);
    if (st != DLM_OK) {
        fail("dlm_generate", st);
    } else {
        size_t nfe = 0;
        dlm_session_nfe(session, &nfe);
        printf("%s\n", dlm_session_text(session));
        fprintf(stderr, "[dlm %s: %zu forward passes]\n", dlm_version(), nfe);
    }

    dlm_session_free(session);
    dlm_model_free(model);
    return st == DLM_OK ? 0 : 1;
}
