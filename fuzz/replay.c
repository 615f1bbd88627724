/*
 * Turns a libFuzzer target into a plain program for `make check`: runs
 * LLVMFuzzerTestOneInput on every file of each directory (or file) given,
 * in name order. A crash (or a sanitizer report in `make asan`) is the
 * failure; otherwise it prints how many inputs ran and exits 0.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int
run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	long n;

	if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 ||
	    fseek(f, 0, SEEK_SET) != 0) {
		fprintf(stderr, "replay: %s: cannot read\n", path);
		if (f)
			fclose(f);
		return -1;
	}
	buf = malloc((size_t)n + 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fprintf(stderr, "replay: %s: cannot read\n", path);
		free(buf);
		fclose(f);
		return -1;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(buf, (size_t)n);
	free(buf);
	return 0;
}

static int
cmp(const void *a, const void *b)
{
	return strcmp(*(char * const *)a, *(char * const *)b);
}

int
main(int argc, char **argv)
{
	int i, total = 0;

	for (i = 1; i < argc; i++) {
		struct stat st;
		struct dirent **ents = NULL;
		char **names = NULL, path[4096];
		DIR *d;
		struct dirent *e;
		size_t n = 0, k;

		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "replay: %s: missing\n", argv[i]);
			return 2;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (run_file(argv[i]) != 0)
				return 2;
			total++;
			continue;
		}
		if ((d = opendir(argv[i])) == NULL)
			return 2;
		while ((e = readdir(d)) != NULL) {
			if (e->d_name[0] == '.')
				continue;
			names = realloc(names, (n + 1) * sizeof(*names));
			names[n++] = strdup(e->d_name);
		}
		closedir(d);
		qsort(names, n, sizeof(*names), cmp);
		for (k = 0; k < n; k++) {
			snprintf(path, sizeof(path), "%s/%s", argv[i], names[k]);
			if (run_file(path) != 0)
				return 2;
			total++;
			free(names[k]);
		}
		free(names);
		(void)ents;
	}
	printf("%d inputs ran\n", total);
	return 0;
}
