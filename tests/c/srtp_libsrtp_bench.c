/*
 * libsrtp's SRTP protect and unprotect rates, for `cargo xtask bench`'s
 * srtp section: the same work as the section's roamgate-srtp loop (a
 * 12-byte RTP header and a 160-byte G.711 payload, one SSRC, sequence
 * numbers in order), timed the same way.
 *
 *   srtp_libsrtp_bench cm|gcm PACKETS
 *
 * prints {"protect_pps": X, "unprotect_pps": Y} on one line.
 */
#include <srtp2/srtp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define HDR 12
#define PAYLOAD 160
#define SLOT (HDR + PAYLOAD + SRTP_MAX_TRAILER_LEN)

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(const char *what, int err) {
    fprintf(stderr, "srtp_libsrtp_bench: %s failed: libsrtp error %d\n", what, err);
    exit(1);
}

static srtp_t session(int gcm, int outbound, unsigned char *key) {
    srtp_policy_t p;
    memset(&p, 0, sizeof p);
    if (gcm) {
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&p.rtp);
        srtp_crypto_policy_set_aes_gcm_128_16_auth(&p.rtcp);
    } else {
        srtp_crypto_policy_set_rtp_default(&p.rtp);
        srtp_crypto_policy_set_rtcp_default(&p.rtcp);
    }
    p.ssrc.type = outbound ? ssrc_any_outbound : ssrc_any_inbound;
    p.key = key;
    p.window_size = 128;
    p.allow_repeat_tx = 0;
    p.next = NULL;
    srtp_t s;
    int err = srtp_create(&s, &p);
    if (err) die("srtp_create", err);
    return s;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "cm") && strcmp(argv[1], "gcm"))) {
        fprintf(stderr, "usage: srtp_libsrtp_bench cm|gcm PACKETS\n");
        return 2;
    }
    int gcm = strcmp(argv[1], "gcm") == 0;
    long n = atol(argv[2]);
    if (n <= 0 || n > 10000000) {
        fprintf(stderr, "PACKETS must be 1 to 10,000,000\n");
        return 2;
    }
    int err = srtp_init();
    if (err) die("srtp_init", err);
    unsigned char key[30];
    for (int i = 0; i < 30; i++) key[i] = (unsigned char)(i * 7 + 1);
    srtp_t tx = session(gcm, 1, key);
    srtp_t rx = session(gcm, 0, key);

    unsigned char *buf = malloc((size_t)n * SLOT);
    int *len = malloc((size_t)n * sizeof(int));
    if (!buf || !len) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    for (long i = 0; i < n; i++) {
        unsigned char *p = buf + i * SLOT;
        memset(p, 0xd5, HDR + PAYLOAD);
        p[0] = 0x80;
        p[1] = 0;
        p[2] = (unsigned char)(i >> 8);
        p[3] = (unsigned char)i;
        uint32_t ts = (uint32_t)(i * 160);
        p[4] = ts >> 24; p[5] = ts >> 16; p[6] = ts >> 8; p[7] = ts;
        p[8] = 0x5e; p[9] = 0xed; p[10] = 0; p[11] = 1;
        len[i] = HDR + PAYLOAD;
    }
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        err = srtp_protect(tx, buf + i * SLOT, &len[i]);
        if (err) die("srtp_protect", err);
    }
    double t1 = now_s();
    for (long i = 0; i < n; i++) {
        err = srtp_unprotect(rx, buf + i * SLOT, &len[i]);
        if (err) die("srtp_unprotect", err);
        if (len[i] != HDR + PAYLOAD) die("srtp_unprotect length", len[i]);
    }
    double t2 = now_s();
    printf("{\"protect_pps\": %.0f, \"unprotect_pps\": %.0f}\n", n / (t1 - t0), n / (t2 - t1));
    srtp_dealloc(tx);
    srtp_dealloc(rx);
    return 0;
}
