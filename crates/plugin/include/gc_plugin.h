/*
 * gc_plugin.h -- the C ABI of General Communications plugins (ABI version 2).
 *
 * Version 2 (rooms): the message hooks get the conversation the message belongs to, as its wire
 * name (`#general`, `#dev`, `@alice+bob`). A plugin built for version 1 is refused, with a
 * message saying to rebuild it.
 *
 * A plugin is a shared library in a mods/ directory that exports two functions:
 *
 *   uint32_t gc_plugin_abi_version(void);                 -- checked before anything else
 *   const gc_plugin_descriptor *gc_plugin_describe(void);  -- name, version, hooks
 *
 * and, so that `plugins list` can tell what it is from the file without running any of its code,
 * the descriptor itself as data (optional; without it a listing says it cannot read the library):
 *
 *   const gc_plugin_descriptor gc_plugin_static_descriptor = { ... };
 *
 * Its first field is the ABI version, in every version of this ABI.
 *
 * A client plugin may also add commands (`/shout TEXT`, listed in the client's /help and completed
 * by Tab) by exporting a command table as data, a symbol of its own (optional):
 *
 *   const gc_plugin_commands gc_plugin_static_commands = { ... };
 *
 * It is not a descriptor field, so the ABI version is unchanged by it: a plugin without the symbol
 * adds no commands, and a host that predates it never looks for it (the plugin's hooks still
 * work there). The table carries its own layout version, GC_PLUGIN_COMMANDS_VERSION.
 *
 * Every hook is optional (NULL = not implemented). Hooks may be called from several threads at
 * once: a plugin's state must be thread-safe. Hooks run on threads of the host's own, and should
 * return quickly: one that runs over the host's budget (50 ms by default) is logged, three such
 * within a minute disable the plugin, and a call that has not returned within the host's limit
 * (1 s by default) is given up and disables the plugin at once.
 *
 * Strings are UTF-8, passed as pointer + length (never NUL-terminated, never NULL when len > 0).
 * Memory is freed by the side that allocated it: strings the host passes are valid only during the
 * call; text a plugin returns in a gc_verdict is released by the host calling the plugin's
 * free_text once it has copied it.
 */
#ifndef GC_PLUGIN_H
#define GC_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define GC_PLUGIN_ABI_VERSION 2u

/* A UTF-8 string slice. */
typedef struct gc_str {
	const char *ptr;
	size_t len;
} gc_str;

/* What a hook decided. */
enum gc_verdict_kind {
	GC_PASS = 0,    /* carry on unchanged (text: empty) */
	GC_REWRITE = 1, /* replace the text with `text` */
	GC_BLOCK = 2,   /* refuse the message; `text` is the reason shown to the sender */
	GC_FAIL = 3,    /* the hook failed; `text` says why. The host disables the plugin. */
	GC_NOTICE = 4   /* on_command only: show `text` to the user, send nothing */
};

typedef struct gc_verdict {
	uint32_t kind; /* enum gc_verdict_kind */
	gc_str text;   /* allocated by the plugin, released with free_text; empty for GC_PASS */
} gc_verdict;

/* Log levels for gc_host.log. */
enum gc_log_level {
	GC_LOG_ERROR = 1,
	GC_LOG_WARN = 2,
	GC_LOG_INFO = 3,
	GC_LOG_DEBUG = 4
};

/* What the host offers a plugin. Valid from init until destroy returns. */
typedef struct gc_host {
	uint32_t abi_version; /* GC_PLUGIN_ABI_VERSION of the host */
	gc_str plugin_path;   /* the plugin's own file, e.g. to find a config file beside it */
	void *ctx;            /* pass back to log */
	void (*log)(void *ctx, uint32_t level, gc_str message);
} gc_host;

typedef struct gc_plugin_descriptor {
	uint32_t abi_version; /* GC_PLUGIN_ABI_VERSION, again */
	gc_str name;          /* e.g. "word-filter" */
	gc_str version;       /* e.g. "1.0.0" */

	/* Creates the plugin's state (stored in *state, passed to every hook). GC_FAIL refuses to
	 * load, with a reason. NULL: no state (hooks get NULL). */
	gc_verdict (*init)(const gc_host *host, void **state);
	/* Releases the state. */
	void (*destroy)(void *state);

	/* Server hooks. */
	gc_verdict (*on_client_connect)(void *state, gc_str user, gc_str address); /* PASS or FAIL */
	gc_verdict (*on_message_received)(void *state, gc_str user, gc_str room,
	                                  gc_str text); /* any */
	gc_verdict (*on_client_disconnect)(void *state, gc_str user);              /* PASS or FAIL */

	/* Client hooks. */
	gc_verdict (*on_message_display)(void *state, gc_str user, gc_str room,
	                                 gc_str text);                      /* PASS, REWRITE */
	gc_verdict (*on_message_send)(void *state, gc_str room, gc_str text); /* any */

	/* Releases text returned in a verdict. Required if any hook returns text. */
	void (*free_text)(gc_str text);
} gc_plugin_descriptor;

/* Commands a client plugin adds (optional; see the top of this file). */
#define GC_PLUGIN_COMMANDS_VERSION 1u
#define GC_PLUGIN_MAX_COMMANDS 32u

typedef struct gc_command {
	gc_str name; /* without the slash: "shout"; 1-32 of a-z 0-9 - _, starting with a letter */
	gc_str args; /* the arguments' hint for /help: "TEXT" (may be empty) */
	gc_str help; /* one line for /help: "send TEXT in capitals" */
} gc_command;

typedef struct gc_plugin_commands {
	uint32_t version;           /* GC_PLUGIN_COMMANDS_VERSION */
	uint32_t count;             /* entries in `commands`, at most GC_PLUGIN_MAX_COMMANDS */
	const gc_command *commands;
	/* The user typed `/name args` in `room` (`name` as declared; `args` as typed after it, leading
	 * blanks removed). Returns GC_REWRITE (send `text` into the room; the send hooks run on it
	 * as on a typed message), GC_NOTICE (show `text`, send nothing), GC_BLOCK (show `text` as an
	 * error, e.g. how to use the command), GC_PASS (nothing more) or GC_FAIL (the host disables
	 * the plugin). Required when count > 0. */
	gc_verdict (*on_command)(void *state, gc_str room, gc_str name, gc_str args);
} gc_plugin_commands;

uint32_t gc_plugin_abi_version(void);
const gc_plugin_descriptor *gc_plugin_describe(void);
extern const gc_plugin_descriptor gc_plugin_static_descriptor; /* optional, see above */
extern const gc_plugin_commands gc_plugin_static_commands;     /* optional, see above */

#ifdef __cplusplus
}
#endif

#endif /* GC_PLUGIN_H */
