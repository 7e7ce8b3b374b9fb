/* A tiny HTTP/1.1 keep-alive load generator for bench_api.py (no HTTP tool ships here).
 *
 * httpload PORT PATH CONNECTIONS SECONDS WARMUP_SECONDS
 *
 * Opens CONNECTIONS keep-alive connections to 127.0.0.1:PORT, each sending GET PATH as soon
 * as the previous answer is complete (no pipelining), for WARMUP_SECONDS unrecorded and
 * then SECONDS recorded; prints one JSON line: requests, rps, p50_ms, p99_ms, errors
 * (answers that are not 200). Responses must carry Content-Length. One epoll thread, so
 * it takes a small share of the CPU the server under test needs.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536

typedef struct {
    int fd;
    double sent;
    size_t have;
    char buf[BUF];
} conn_t;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Return the length of a complete response at the start of buf, 0 if incomplete. */
static size_t complete(const char *buf, size_t have, int *ok) {
    const char *end = memmem(buf, have, "\r\n\r\n", 4);
    if (!end) return 0;
    size_t head = (size_t)(end - buf) + 4;
    const char *p = buf;
    long length = -1;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
        if (!eol) break;
        if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0)
            length = strtol(p + 15, NULL, 10);
        p = eol + 2;
    }
    if (length < 0) { fprintf(stderr, "httpload: no Content-Length\n"); exit(2); }
    if (have < head + (size_t)length) return 0;
    *ok = have >= 12 && memcmp(buf + 9, "200", 3) == 0;
    return head + (size_t)length;
}

int main(int argc, char **argv) {
    if (argc != 6) { fprintf(stderr, "usage: httpload PORT PATH CONNS SECONDS WARMUP\n"); return 2; }
    int port = atoi(argv[1]), conns = atoi(argv[3]);
    double seconds = atof(argv[4]), warmup = atof(argv[5]);
    char request[1024];
    int reqlen = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", argv[2]);
    size_t cap = 1 << 22, count = 0;
    double *lat = malloc(cap * sizeof(double));
    long errors = 0;
    int ep = epoll_create1(0);
    conn_t *cs = calloc((size_t)conns, sizeof(conn_t));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    double start = now(), record_from = start + warmup, until = record_from + seconds;
    for (int i = 0; i < conns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) { perror("connect"); return 1; }
        cs[i].fd = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &cs[i]};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        cs[i].sent = now();
        if (write(fd, request, (size_t)reqlen) != reqlen) { perror("write"); return 1; }
    }
    struct epoll_event events[256];
    int open = conns;
    while (open > 0) {
        int n = epoll_wait(ep, events, 256, 1000);
        for (int e = 0; e < n; e++) {
            conn_t *c = events[e].data.ptr;
            ssize_t got = read(c->fd, c->buf + c->have, BUF - c->have);
            if (got <= 0) { fprintf(stderr, "httpload: connection closed\n"); return 1; }
            c->have += (size_t)got;
            int ok = 0;
            size_t used;
            while ((used = complete(c->buf, c->have, &ok)) > 0) {
                double t = now();
                if (c->sent >= record_from && t <= until) {
                    if (count == cap) { cap *= 2; lat = realloc(lat, cap * sizeof(double)); }
                    lat[count++] = t - c->sent;
                    if (!ok) errors++;
                }
                memmove(c->buf, c->buf + used, c->have - used);
                c->have -= used;
                if (t >= until) { close(c->fd); c->fd = -1; open--; break; }
                c->sent = t;
                if (write(c->fd, request, (size_t)reqlen) != reqlen) { perror("write"); return 1; }
            }
        }
    }
    qsort(lat, count, sizeof(double), cmp);
    double p50 = count ? lat[count / 2] : 0, p99 = count ? lat[(size_t)(0.99 * (count - 1))] : 0;
    printf("{\"requests\": %zu, \"rps\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"errors\": %ld}\n",
           count, count / seconds, p50 * 1000, p99 * 1000, errors);
    return 0;
}
