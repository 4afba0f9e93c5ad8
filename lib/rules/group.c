/* group.c -- every admission rule of a ContactGroup */
#include <stdlib.h>

#include "rules.h"
#include "validate.h"

static void
validate(const struct resource *obj, const struct resource *old, struct field_list *errs)
{
	const struct group_spec *g = &obj->spec.group;
	enum visibility was;

	if (!obj->has_spec) {
		field_required(errs, "spec", NULL);
		return;
	}
	if (!g->display_name || !g->display_name[0])
		field_required(errs, "spec.displayName", NULL);
	else
		validate_text(errs, "spec.displayName", g->display_name,
		    VALIDATE_DISPLAY_NAME_MAX);
	if (g->visibility == VISIBILITY_UNSET)
		field_required(errs, "spec.visibility", NULL);
	if (g->description)
		validate_paragraphs(errs, "spec.description", g->description,
		    VALIDATE_DESCRIPTION_MAX);
	if (!old || !old->has_spec)
		return;
	was = old->spec.group.visibility;
	if ((was == VISIBILITY_PUBLIC || was == VISIBILITY_PRIVATE) &&
	    (g->visibility == VISIBILITY_PUBLIC || g->visibility == VISIBILITY_PRIVATE) &&
	    g->visibility != was)
		field_invalid(errs, "spec.visibility", visibility_name(g->visibility),
		    "field is immutable");
}

/* No other group in the namespace with the same displayName and visibility. */
static void
state(const struct admission_env *env, const struct admission_user *user,
    const struct resource *obj, const struct resource *old, struct field_list *errs,
    struct admission_notes *notes)
{
	const char *ns = obj->meta.namespace ? obj->meta.namespace : "";
	char *other = NULL;
	int rc;

	(void)user;
	(void)old;
	if (!env || !env->cache || !obj->spec.group.display_name ||
	    field_list_has(errs, "spec.displayName"))
		return;
	rc = cache_group_by_display(env->cache, ns, obj->spec.group.display_name,
	    obj->spec.group.visibility, obj->meta.name, &other);
	if (rc == 1)
		field_duplicate_detail(errs, "spec.displayName", obj->spec.group.display_name,
		    "ContactGroup \"%s\" in this namespace has the same displayName and "
		    "visibility", other);
	else if (rc < 0)
		notes->oom = 1;
	free(other);
}

const struct rules_kind rules_group = { validate, state, NULL };
