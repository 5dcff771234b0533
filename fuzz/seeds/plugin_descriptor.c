/* The seed fuzz/corpus/plugin_descriptor/seed-static-descriptor.so, built with:
 *   gcc -shared -fPIC -nostdlib -s -O2 -Wl,-z,max-page-size=0x1000 -Wl,-z,norelro \
 *       -I crates/plugin/include -o seed-static-descriptor.so fuzz/seeds/plugin_descriptor.c
 * (seed-no-descriptor.so: `int x = 1;` built the same way.) */
#include "gc_plugin.h"
static gc_verdict pass(void *state, gc_str user, gc_str room, gc_str text) {
	(void)state; (void)user; (void)room; (void)text;
	gc_verdict v = {0};
	return v;
}
const gc_plugin_descriptor gc_plugin_static_descriptor = {
	.abi_version = GC_PLUGIN_ABI_VERSION,
	.name = { "seed", 4 },
	.version = { "1.0", 3 },
	.on_message_received = pass,
};
uint32_t gc_plugin_abi_version(void) { return GC_PLUGIN_ABI_VERSION; }
const gc_plugin_descriptor *gc_plugin_describe(void) { return &gc_plugin_static_descriptor; }
