/* fuzz_admission.c -- libFuzzer target: any body into every admission endpoint */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "admission.h"
#include "jsonparse.h"
#include "log.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	log_set_level(LOG_LEVEL_ERROR);
	jsonparse_init();	/* the arena path, as in the webhook */
	return 0;
}

/*
 * What kube-apiserver insists on, checked on every answer: a 200 is an
 * AdmissionReview with a response, and a validating endpoint never
 * returns a patch; anything else is a 400 with a reason.
 */
static void
check(const struct admission_outcome *out, enum admission_mode mode)
{
	json_t *doc, *resp;

	if (!out->body || !out->content_type)
		abort();
	if (out->http_status == 400) {
		if (!out->reason)
			abort();
		return;
	}
	if (out->http_status != 200)
		abort();
	doc = json_loadb(out->body, out->body_len, 0, NULL);
	resp = json_object_get(doc, "response");
	if (!json_is_object(resp) ||
	    !json_is_string(json_object_get(resp, "uid")) ||
	    !json_is_boolean(json_object_get(resp, "allowed")) ||
	    strcmp(json_string_value(json_object_get(doc, "kind")),
	    "AdmissionReview") != 0)
		abort();
	if (mode == ADMISSION_VALIDATE && (json_object_get(resp, "patch") ||
	    json_object_get(resp, "patchType")))
		abort();
	json_decref(doc);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct admission_outcome out;

	for (int m = 0; m < 2; m++) {
		for (int k = 0; k < KIND__COUNT; k++) {
			enum admission_mode mode = m ? ADMISSION_MUTATE :
			    ADMISSION_VALIDATE;

			if (admission_handle(NULL, (enum resource_kind)k, mode,
			    (const char *)data, size, &out) != 0)
				continue;	/* ENOMEM: nothing to check */
			check(&out, mode);
			admission_outcome_free(&out);
		}
	}
	return 0;
}
