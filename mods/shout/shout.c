/*
 * shout.c -- a gc client plugin in C: "/shout text" is sent as "TEXT!".
 *
 * It adds the command /shout (listed in the terminal UI's /help, completed by Tab), and keeps
 * its on_message_send hook for front ends without commands (headless mode, the library): there a
 * message starting with "/shout " is shouted as it is sent.
 *
 * Build it on its own with:
 *   cc -shared -fPIC -O2 -I crates/plugin/include mods/shout/shout.c -o libshout.so
 */
#include <stdlib.h>
#include <string.h>

#include "gc_plugin.h"

static const char PREFIX[] = "/shout ";

static gc_verdict pass(void)
{
	gc_verdict v = { GC_PASS, { NULL, 0 } };
	return v;
}

static gc_verdict with_text(uint32_t kind, char *text, size_t len)
{
	gc_verdict v = { kind, { text, len } };
	return v;
}

/* `text` (n bytes) in capitals with a "!", or a block/failure verdict. */
static gc_verdict shout(const char *text, size_t n)
{
	if (n == 0) {
		static const char why[] = "/shout needs something to shout";
		char *reason = malloc(sizeof why - 1);
		if (reason == NULL)
			return pass();
		memcpy(reason, why, sizeof why - 1);
		return with_text(GC_BLOCK, reason, sizeof why - 1);
	}
	char *out = malloc(n + 1);
	if (out == NULL) {
		static char oom[] = "out of memory";
		/* A failure with static text would be freed by the host: copy it instead. */
		char *msg = malloc(sizeof oom - 1);
		if (msg == NULL)
			return pass();
		memcpy(msg, oom, sizeof oom - 1);
		return with_text(GC_FAIL, msg, sizeof oom - 1);
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)text[i];
		/* ASCII only: bytes of multi-byte UTF-8 sequences are >= 0x80 and stay as they are. */
		out[i] = (char)(c >= 'a' && c <= 'z' ? c - ('a' - 'A') : c);
	}
	out[n] = '!';
	return with_text(GC_REWRITE, out, n + 1);
}

static gc_verdict on_message_send(void *state, gc_str room, gc_str text)
{
	const size_t plen = sizeof PREFIX - 1;
	(void)state;
	(void)room;
	if (text.len < plen || memcmp(text.ptr, PREFIX, plen) != 0)
		return pass();
	return shout(text.ptr + plen, text.len - plen);
}

/* "/shout TEXT": the host passes TEXT (its leading blanks removed) as args. */
static gc_verdict on_command(void *state, gc_str room, gc_str name, gc_str args)
{
	(void)state;
	(void)room;
	(void)name; /* the only command this plugin declares */
	return shout(args.ptr, args.len);
}

static void free_text(gc_str text)
{
	free((void *)text.ptr);
}

/* A gc_str of a string literal. */
#define LIT(s) { s, sizeof s - 1 }

static const gc_command COMMANDS[] = {
	{ LIT("shout"), LIT("TEXT"), LIT("send TEXT in capitals, with a !") },
};

/* The command table: its own exported symbol (a host that predates it ignores it). */
const gc_plugin_commands gc_plugin_static_commands = {
	.version = GC_PLUGIN_COMMANDS_VERSION,
	.count = sizeof COMMANDS / sizeof COMMANDS[0],
	.commands = COMMANDS,
	.on_command = on_command,
};

/* Exported as data too, so that `plugins list` reads it without running this library. */
const gc_plugin_descriptor gc_plugin_static_descriptor = {
	.abi_version = GC_PLUGIN_ABI_VERSION,
	.name = { "shout", 5 },
	.version = { "1.0.0", 5 },
	.init = NULL,
	.destroy = NULL,
	.on_client_connect = NULL,
	.on_message_received = NULL,
	.on_client_disconnect = NULL,
	.on_message_display = NULL,
	.on_message_send = on_message_send,
	.free_text = free_text,
};

uint32_t gc_plugin_abi_version(void)
{
	return GC_PLUGIN_ABI_VERSION;
}

const gc_plugin_descriptor *gc_plugin_describe(void)
{
	return &gc_plugin_static_descriptor;
}
