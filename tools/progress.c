/*
 * progress.c: the progress bar (progress.h), shared by bvault and
 * bvault-agent.
 */
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

void human(char *buf, size_t len, double v)
{
	static const char *const u[] = { "B", "KiB", "MiB", "GiB", "TiB",
					  "PiB", "EiB" };
	int i = 0;

	while (v >= 1024 && i < 6) {
		v /= 1024;
		i++;
	}
	if (i == 0)
		snprintf(buf, len, "%.0f B", v);
	else
		snprintf(buf, len, "%.1f %s", v, u[i]);
}

double now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void progress_start(struct progress *p, const char *what, FILE *f)
{
	p->what = what;
	p->f = f;
	p->on = isatty(fileno(p->f));
	p->drawn = 0;
	p->start = now_sec();
	p->last = 0;
}

void progress_draw(struct progress *p, uint64_t done, uint64_t total)
{
	char d[32], t[32], r[32];
	double el = now_sec() - p->start;
	int width = 30, fill;

	human(d, sizeof(d), (double)done);
	human(r, sizeof(r), el > 0 ? (double)done / el : 0);
	if (total) {
		human(t, sizeof(t), (double)total);
		fill = done >= total ? width : (int)((double)done * width /
						      (double)total);
		fprintf(p->f, "\r%s [%.*s%*s] %3d%% %s / %s  %s/s\033[K",
			p->what, fill, "##############################",
			width - fill, "",
			(int)(done >= total ? 100 : done * 100.0 / total), d, t,
			r);
	} else {
		fprintf(p->f, "\r%s %s  %s/s\033[K", p->what, d, r);
	}
	p->drawn = 1;
}

/* The bv_progress_fn: redraws at most ten times a second. */
void progress_cb(void *ud, uint64_t done, uint64_t total)
{
	struct progress *p = ud;
	double t;

	if (!p || !p->on)
		return;
	t = now_sec();
	if (t - p->last < 0.1 && (total == 0 || done < total))
		return;
	p->last = t;
	progress_draw(p, done, total);
}

void progress_end(struct progress *p)
{
	if (p->on && p->drawn) {
		fputc('\n', p->f);
		p->drawn = 0;
	}
}
