static unsigned long klpt_kp@INDEX@_hits;

static int klpt_kp@INDEX@_pre(struct kprobe *p, struct pt_regs *regs)
{
	WRITE_ONCE(klpt_kp@INDEX@_hits, READ_ONCE(klpt_kp@INDEX@_hits) + 1);
	return 0;
}

static void __kprobes __maybe_unused klpt_kp@INDEX@_post(struct kprobe *p, struct pt_regs *regs,
		unsigned long flags)
{
}

static struct kprobe klpt_kp@INDEX@ = {
	.symbol_name = @SYMBOL@,
	.pre_handler = klpt_kp@INDEX@_pre,
};

static int klpt_kp@INDEX@_show(struct seq_file *m, void *v)
{
	seq_printf(m, "%lu\n", READ_ONCE(klpt_kp@INDEX@_hits));
	return 0;
}

static int klpt_kp@INDEX@_open(struct inode *inode, struct file *file)
{
	return single_open(file, klpt_kp@INDEX@_show, NULL);
}

static const struct proc_ops klpt_kp@INDEX@_ops = {
	.proc_open = klpt_kp@INDEX@_open,
	.proc_read = seq_read,
	.proc_lseek = seq_lseek,
	.proc_release = single_release,
};
