/*
 * The files of ui/ built into the binary: $(BUILD)/gen/ui_assets.c, made
 * by scripts/embed.sh at build time (no file is read at run time).
 */
#ifndef MTLS_UI_ASSETS_H
#define MTLS_UI_ASSETS_H

#include <stddef.h>

struct ui_asset {
	const char		*name;	/* "index.html", ... */
	const unsigned char	*data;
	size_t			 len;
};

extern const struct ui_asset	ui_assets[];
extern const size_t		ui_assets_n;

#endif
