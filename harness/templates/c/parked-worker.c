static bool @NAME@_parked, @NAME@_released;
static char @NAME@_call_fn[64], @NAME@_call_out[512];
static int @NAME@_call_seq, @NAME@_call_done;

static void @NAME@_call(const char *name)
{
	struct seq_file m = { .buf = @NAME@_call_out, .size = sizeof(@NAME@_call_out) - 1 };

	memset(@NAME@_call_out, 0, sizeof(@NAME@_call_out));
	if (0)
		;
@DISPATCH@	else
		snprintf(@NAME@_call_out, sizeof(@NAME@_call_out), "klpt: no function %s\n", name);
}

noinline void @NAME@(void)
{
	WRITE_ONCE(@NAME@_parked, true);
	while (!READ_ONCE(@NAME@_released)) {
		if (smp_load_acquire(&@NAME@_call_seq) != READ_ONCE(@NAME@_call_done)) {
			@NAME@_call(@NAME@_call_fn);
			smp_store_release(&@NAME@_call_done, READ_ONCE(@NAME@_call_seq));
		}
		msleep_interruptible(10);
	}
	WRITE_ONCE(@NAME@_parked, false);
}

static void @NAME@_work_fn(struct work_struct *w)
{
	@NAME@();
}
static DECLARE_WORK(@NAME@_work, @NAME@_work_fn);

static int @NAME@_show(struct seq_file *m, void *v)
{
	seq_printf(m, "%s\n", READ_ONCE(@NAME@_parked) ? "parked" : "idle");
	return 0;
}

/* What the parked worker's last call printed, or "pending". */
static int @NAME@_call_show(struct seq_file *m, void *v)
{
	if (smp_load_acquire(&@NAME@_call_done) != READ_ONCE(@NAME@_call_seq))
		seq_puts(m, "pending\n");
	else
		seq_puts(m, @NAME@_call_out);
	return 0;
}

static ssize_t @NAME@_write(struct file *file, const char __user *ubuf, size_t len, loff_t *off)
{
	char buf[80] = { };

	if (copy_from_user(buf, ubuf, min(len, sizeof(buf) - 1)))
		return -EFAULT;
	strim(buf);
	if (!strcmp(buf, "park")) {
		WRITE_ONCE(@NAME@_released, false);
		schedule_work(&@NAME@_work);
	} else if (!strcmp(buf, "release")) {
		WRITE_ONCE(@NAME@_released, true);
	} else if (!strncmp(buf, "call ", 5)) {
		/* Only a parked worker can call: it is the unswitched task. */
		if (!READ_ONCE(@NAME@_parked))
			return -ESRCH;
		if (smp_load_acquire(&@NAME@_call_done) != READ_ONCE(@NAME@_call_seq))
			return -EBUSY;
		strscpy(@NAME@_call_fn, buf + 5, sizeof(@NAME@_call_fn));
		smp_store_release(&@NAME@_call_seq, @NAME@_call_seq + 1);
	} else {
		return -EINVAL;
	}
	return len;
}

static int @NAME@_call_open(struct inode *inode, struct file *file)
{
	return single_open(file, @NAME@_call_show, NULL);
}

static const struct proc_ops @NAME@_call_ops = {
	.proc_open = @NAME@_call_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = single_release,
};
