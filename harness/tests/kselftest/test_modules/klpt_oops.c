// SPDX-License-Identifier: GPL-2.0
// Oopses on load: a store through a NULL pointer.
#include <linux/module.h>

static int __init klpt_oops_init(void)
{
	*(volatile int *)NULL = 1;
	return 0;
}
module_init(klpt_oops_init);
MODULE_LICENSE("GPL");
