static bool @NAME@_running;
static DECLARE_COMPLETION(@NAME@_started);

noinline void @NAME@(struct work_struct *work)
{
	pr_info("%s enter\n", __func__);
	WRITE_ONCE(@NAME@_running, true);
	complete(&@NAME@_started);
@WAIT@	WRITE_ONCE(@NAME@_running, false);
	pr_info("%s exit\n", __func__);
}
static DECLARE_WORK(@NAME@_work, @NAME@);

static int @NAME@_show(struct seq_file *m, void *v)
{
	seq_printf(m, "%s\n", READ_ONCE(@NAME@_running) ? "running" : "idle");
	return 0;
}

static ssize_t @NAME@_write(struct file *file, const char __user *ubuf, size_t len, loff_t *off)
{
	char buf[16] = { };

	if (copy_from_user(buf, ubuf, min(len, sizeof(buf) - 1)))
		return -EFAULT;
	if (strcmp(strim(buf), "run"))
		return -EINVAL;
	queue_work(system_wq, &@NAME@_work);
	return len;
}
