/*
 * zstd_chunks.c
 *		What zstd alone can do with the archive writer's chunking: compress a
 *		file chunk by chunk, each chunk one ZSTD_compress2 call (one zstd
 *		frame, as the archive writer does), and print MB/s.
 *
 *	  zstd_chunks FILE LEVEL CHUNK_BYTES mt WORKERS [JOB_BYTES]
 *		one context with ZSTD_c_nbWorkers = WORKERS (what
 *		backup_offline.compression_workers sets), optionally
 *		ZSTD_c_jobSize = JOB_BYTES (zstd's minimum is 512 KiB);
 *	  zstd_chunks FILE LEVEL CHUNK_BYTES chunks THREADS
 *		THREADS threads with one single-threaded context each, thread t
 *		compressing chunks t, t + THREADS, ... (several chunks in parallel).
 *
 * For test/bench/archive.sh: it separates what the chunk size and zstd's
 * own worker threads allow from the rest of the pipeline.  The file is
 * read into memory first; only compression is timed.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zstd.h>

static const char *data;
static size_t data_len;
static size_t chunk;
static int	level;
static int	nthreads;
static size_t compressed_total[64];

/* Compress chunks arg, arg + nthreads, ... with a single-threaded context */
static void *
worker(void *arg)
{
	int			t = (int) (long) arg;
	ZSTD_CCtx  *cctx = ZSTD_createCCtx();
	void	   *out = malloc(ZSTD_compressBound(chunk));
	size_t		off;

	ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
	for (off = (size_t) t * chunk; off < data_len; off += (size_t) nthreads * chunk)
	{
		size_t		n = data_len - off < chunk ? data_len - off : chunk;
		size_t		r = ZSTD_compress2(cctx, out, ZSTD_compressBound(chunk), data + off, n);

		if (ZSTD_isError(r))
		{
			fprintf(stderr, "zstd: %s\n", ZSTD_getErrorName(r));
			exit(1);
		}
		compressed_total[t] += r;
	}
	free(out);
	ZSTD_freeCCtx(cctx);
	return NULL;
}

/* Seconds of a monotonic clock */
static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	FILE	   *f;
	char	   *buf;
	size_t		total = 0;
	double		t0,
				t1;
	int			i;

	if (argc < 6 || (strcmp(argv[4], "mt") != 0 && strcmp(argv[4], "chunks") != 0))
	{
		fprintf(stderr, "usage: %s FILE LEVEL CHUNK_BYTES mt WORKERS [JOB_BYTES] | chunks THREADS\n", argv[0]);
		return 2;
	}
	level = atoi(argv[2]);
	chunk = strtoul(argv[3], NULL, 10);
	f = fopen(argv[1], "rb");
	if (f == NULL || fseek(f, 0, SEEK_END) != 0)
	{
		perror(argv[1]);
		return 1;
	}
	data_len = (size_t) ftell(f);
	rewind(f);
	buf = malloc(data_len);
	if (buf == NULL || fread(buf, 1, data_len, f) != data_len)
	{
		perror(argv[1]);
		return 1;
	}
	fclose(f);
	data = buf;

	t0 = now();
	if (strcmp(argv[4], "mt") == 0)
	{
		ZSTD_CCtx  *cctx = ZSTD_createCCtx();
		void	   *out = malloc(ZSTD_compressBound(chunk));
		size_t		off;

		ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
		if (atoi(argv[5]) > 0)
			ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, atoi(argv[5]));
		if (argc > 6)
			ZSTD_CCtx_setParameter(cctx, ZSTD_c_jobSize, atoi(argv[6]));
		for (off = 0; off < data_len; off += chunk)
		{
			size_t		n = data_len - off < chunk ? data_len - off : chunk;
			size_t		r = ZSTD_compress2(cctx, out, ZSTD_compressBound(chunk), data + off, n);

			if (ZSTD_isError(r))
			{
				fprintf(stderr, "zstd: %s\n", ZSTD_getErrorName(r));
				return 1;
			}
			total += r;
		}
	}
	else
	{
		pthread_t	th[64];

		nthreads = atoi(argv[5]);
		if (nthreads < 1 || nthreads > 64)
			return 2;
		for (i = 0; i < nthreads; i++)
			pthread_create(&th[i], NULL, worker, (void *) (long) i);
		for (i = 0; i < nthreads; i++)
		{
			pthread_join(th[i], NULL);
			total += compressed_total[i];
		}
	}
	t1 = now();
	printf("%.0f %zu\n", data_len / (t1 - t0) / 1e6, total);
	return 0;
}
