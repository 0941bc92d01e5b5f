static LIST_HEAD(klpt_ptr_list);
struct klpt_shadow_ptr {
	void *ptr;
	int id;
	struct list_head list;
};

static __maybe_unused void klpt_free_ptr_list(void)
{
	struct klpt_shadow_ptr *sp, *tmp_sp;

	list_for_each_entry_safe(sp, tmp_sp, &klpt_ptr_list, list) {
		list_del(&sp->list);
		kfree(sp);
	}
}

static __maybe_unused int klpt_ptr_id(void *ptr)
{
	struct klpt_shadow_ptr *sp;
	static int count;

	list_for_each_entry(sp, &klpt_ptr_list, list) {
		if (sp->ptr == ptr)
			return sp->id;
	}

	sp = kmalloc(sizeof(*sp), GFP_ATOMIC);
	if (!sp)
		return -ENOMEM;
	sp->ptr = ptr;
	sp->id = count++;

	list_add(&sp->list, &klpt_ptr_list);

	return sp->id;
}

/* The pointer ctor_data points to (the selftest passes a pointer's address). */
static __maybe_unused int klpt_ctor_data_id(void *ctor_data)
{
	return klpt_ptr_id(ctor_data ? *(void **)ctor_data : NULL);
}

static __maybe_unused void *klpt_shadow_get(void *obj, unsigned long id)
{
	void *sv = klp_shadow_get(obj, id);

	pr_info("klp_shadow_get(obj=PTR%d, id=0x%lx) = PTR%d\n",
		klpt_ptr_id(obj), id, klpt_ptr_id(sv));
	return sv;
}

static __maybe_unused void *klpt_shadow_alloc(void *obj, unsigned long id, size_t size,
		gfp_t gfp_flags, klp_shadow_ctor_t ctor, void *ctor_data)
{
	void *sv = klp_shadow_alloc(obj, id, size, gfp_flags, ctor, ctor_data);

	pr_info("klp_shadow_alloc(obj=PTR%d, id=0x%lx, size=%zx, gfp_flags=%pGg), ctor=PTR%d, ctor_data=PTR%d = PTR%d\n",
		klpt_ptr_id(obj), id, size, &gfp_flags, klpt_ptr_id(ctor),
		klpt_ctor_data_id(ctor_data), klpt_ptr_id(sv));
	return sv;
}

static __maybe_unused void *klpt_shadow_get_or_alloc(void *obj, unsigned long id, size_t size,
		gfp_t gfp_flags, klp_shadow_ctor_t ctor, void *ctor_data)
{
	void *sv = klp_shadow_get_or_alloc(obj, id, size, gfp_flags, ctor, ctor_data);

	pr_info("klp_shadow_get_or_alloc(obj=PTR%d, id=0x%lx, size=%zx, gfp_flags=%pGg), ctor=PTR%d, ctor_data=PTR%d = PTR%d\n",
		klpt_ptr_id(obj), id, size, &gfp_flags, klpt_ptr_id(ctor),
		klpt_ctor_data_id(ctor_data), klpt_ptr_id(sv));
	return sv;
}

static __maybe_unused void klpt_shadow_free(void *obj, unsigned long id, klp_shadow_dtor_t dtor)
{
	klp_shadow_free(obj, id, dtor);
	pr_info("klp_shadow_free(obj=PTR%d, id=0x%lx, dtor=PTR%d)\n",
		klpt_ptr_id(obj), id, klpt_ptr_id(dtor));
}

static __maybe_unused void klpt_shadow_free_all(unsigned long id, klp_shadow_dtor_t dtor)
{
	klp_shadow_free_all(id, dtor);
	pr_info("klp_shadow_free_all(id=0x%lx, dtor=PTR%d)\n", id, klpt_ptr_id(dtor));
}

static __maybe_unused int klpt_shadow_ctor(void *obj, void *shadow_data, void *ctor_data)
{
	void **sv = shadow_data;
	void **var = ctor_data;

	if (!var)
		return -EINVAL;

	*sv = *var;
	pr_info("shadow_ctor: PTR%d -> PTR%d\n", klpt_ptr_id(sv), klpt_ptr_id(*var));
	return 0;
}

static __maybe_unused void klpt_shadow_dtor(void *obj, void *shadow_data)
{
	pr_info("shadow_dtor(obj=PTR%d, shadow_data=PTR%d)\n",
		klpt_ptr_id(obj), klpt_ptr_id(shadow_data));
}
