static __maybe_unused struct klp_state *klpt_state(unsigned long id)
{
	return klp_get_state(&klpt_patch, id);
}

static __maybe_unused struct klp_state *klpt_prev_state(unsigned long id)
{
	return klp_get_prev_state(id);
}
