/* validate_group.c -- ContactGroup rules that need no cluster state */
#include "validate.h"

void
validate_group(const struct resource *obj, const struct resource *old,
    struct field_list *errs)
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
