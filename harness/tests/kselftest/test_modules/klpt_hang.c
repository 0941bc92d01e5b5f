// SPDX-License-Identifier: GPL-2.0
// Hangs a 1-CPU kernel on load: spins with interrupts off.
#include <linux/module.h>
#include <linux/irqflags.h>

static int __init klpt_hang_init(void)
{
	local_irq_disable();
	while (1)
		cpu_relax();
	return 0;
}
module_init(klpt_hang_init);
MODULE_LICENSE("GPL");
