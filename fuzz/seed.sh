#!/usr/bin/env bash
# Build the seed corpus of the fuzz targets: fuzz/corpus/<target>/<name>.
#
#   fuzz/seed.sh
#
# Writes the hand-made seeds below (idempotent: same names, same bytes), then copies the golden
# request corpus tests/corpus/*.request, when it exists, into fuzz/corpus/parse_request/ as
# golden-<name>, with a configuration selector byte in front: 5 (max_head_size 256, max_headers
# 8, max_body_size 16: the limits its .config files use) when the case has a .config setting
# max_*, else 0 (the default Config). Run it again after
# tests/corpus changes; commit what it writes. Seeds must not crash a target: the corpus is
# replayed by `cargo test` (tests/fuzz_corpus.rs, actors/tests/fuzz_corpus.rs).
#
# Input layouts (see iomux::__fuzz and iomux_actors::__fuzz):
#   parse_request  1 byte selector (% 6: config variant; >> 3: split seed), then the bytes
#                  a client sent on one connection.
#   chunked        2 bytes split point (little endian), 1 byte limits (% 5), then the body.
#   cursor         the whole input as a message id; bytes 0..12 as (time, tag); and byte 0 as a mask
#                  (1: query, 2: If-Modified-Since, 4: If-None-Match, 8: Etag, 16: Last-Event-ID)
#                  with the \n-separated fields that follow (query, then those headers in order).
set -euo pipefail
cd "$(dirname "$0")"

# seed TARGET NAME PRINTF-FORMAT [ARGS...]: one seed file, written with printf.
seed() {
  local target=$1 name=$2
  shift 2
  mkdir -p "corpus/$target"
  # shellcheck disable=SC2059
  printf "$@" >"corpus/$target/$name"
}

# --- parse_request: selector 0 = default Config ---------------------------------------------
R() { local name=$1 fmt=$2; shift 2; seed parse_request "$name" "\\x00$fmt" "$@"; }
R get 'GET / HTTP/1.1\r\nHost: example\r\n\r\n'
R get-http10 'GET /index.html HTTP/1.0\r\n\r\n'
R get-http10-keep-alive 'GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n'
R get-absolute-form 'GET http://example/a%%20b?x=1&y HTTP/1.1\r\nHost: example\r\n\r\n'
R get-utf8-path 'GET /caf\xc3\xa9?q=\xe2\x9c\x93 HTTP/1.1\r\nHost: x\r\n\r\n'
R options-star 'OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n'
R connect-authority 'CONNECT example:443 HTTP/1.1\r\nHost: example:443\r\n\r\n'
R head-close 'HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
R connection-list 'GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, CLOSE\r\nUpgrade: websocket\r\n\r\n'
R subscriber 'GET /sub/news?last_event_id=1795791979%%3A2 HTTP/1.1\r\nHost: x\r\nIf-None-Match: 3\r\nIf-Modified-Since: Thu, 01 Jan 2026 00:00:00 GMT\r\nAccept: text/event-stream\r\n\r\n'
R post-length 'POST /pub/news HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello'
R post-length-list 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc'
R post-length-zero 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n'
R post-length-short 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc'
R post-expect 'POST /upload HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc'
R post-expect-http10 'POST /upload HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc'
R post-chunked-trailers 'POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Trailer: y\r\nX-Other: z\r\n\r\n'
R post-chunked-expect 'POST /c HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n'
R post-chunked-partial 'POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc'
R pipelined 'GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhiPOST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'
R pipelined-partial 'GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHo'
R bare-lf 'GET / HTTP/1.1\nHost: x\n\n'
R leading-crlf '\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n'
R http12 'GET / HTTP/1.2\r\nHost: x\r\n\r\n'
R http19-leading-crlf '\r\nGET / HTTP/1.9\r\nHost: x\r\n\r\n'
R partial-head 'GET / HTTP/1.1\r\nHost: x\r\n'
R partial-line 'GET /pa'
R empty-value 'GET / HTTP/1.1\r\nHost: x\r\nAccept:\r\n\r\n'
R high-bytes-value 'GET / HTTP/1.1\r\nHost: x\r\nX-Name: caf\xe9 \xff\r\n\r\n'
# Malformed, one per refusal class.
R bad-double-space 'GET  / HTTP/1.1\r\nHost: x\r\n\r\n'
R bad-http09 'GET /\r\n\r\n'
R bad-version-name 'GET / FOO/1.1\r\nHost: x\r\n\r\n'
R bad-version-lowercase 'GET / http/1.1\r\nHost: x\r\n\r\n'
R bad-version-minor 'GET / HTTP/1.10\r\nHost: x\r\n\r\n'
R bad-version-trailing-space 'GET / HTTP/1.2 \r\nHost: x\r\n\r\n'
R partial-version-http2 'GET / HTTP/2'
R bad-host 'GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n'
R host-ipv6-port 'GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n'
R unsupported-http2 'GET / HTTP/2.0\r\nHost: x\r\n\r\n'
R bad-method-token 'G(T / HTTP/1.1\r\nHost: x\r\n\r\n'
R bad-target-ctl 'GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n'
R bad-target-utf8 'GET /\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n'
R missing-host 'GET / HTTP/1.1\r\n\r\n'
R two-hosts 'GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n'
R two-hosts-http10 'GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n'
R smuggle-cl-te 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
R smuggle-te-cl 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n'
R cl-mismatch 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello'
R cl-two-fields 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello'
R cl-empty-member 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5,,5\r\n\r\nhello'
R cl-plus 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello'
R cl-negative 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n'
R cl-overflow 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n'
R cl-too-large 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n'
R te-gzip-chunked 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n'
R te-chunked-gzip 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n'
R te-chunked-twice 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
R te-empty 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\n\r\n'
R te-http10 'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
R expect-unknown 'POST / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\na'
R obs-fold 'GET / HTTP/1.1\r\nHost: x\r\nX-Long: a\r\n  folded\r\n\r\n'
R space-before-colon 'GET / HTTP/1.1\r\nHost : x\r\n\r\n'
R nul-in-value 'GET / HTTP/1.1\r\nHost: x\x00y\r\n\r\n'
R cr-without-lf 'GET / HTTP/1.1\rHost: x\r\n\r\n'
R chunked-bad-size 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n'
R chunked-size-17-digits 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n11111111111111111\r\n'
R chunked-too-large 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n100001\r\n'
R chunked-missing-crlf 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiX0\r\n\r\n'
# Limits: too many header fields (431), a request line over max_head_size (414), a head over it
# (431).
many=$(for i in $(seq 1 70); do printf 'X-H%d: v\\r\\n' "$i"; done)
R too-many-headers "GET / HTTP/1.1\\r\\nHost: x\\r\\n${many}\\r\\n"
R uri-too-long "GET /$(head -c 9000 /dev/zero | tr '\0' a) HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n"
R head-too-large "GET / HTTP/1.1\\r\\nHost: x\\r\\nX-Big: $(head -c 9000 /dev/zero | tr '\0' b)\\r\\n\\r\\n"
# Other configurations: 1 = tiny limits (64-byte head, 4 fields, 16-byte body), 2 = no header
# slots and no body, 3 = 200 heap header slots, 4 = no limits, 5 = tests/corpus limits (256,
# 8, 16).
seed parse_request tiny-post '\x01POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello'
seed parse_request tiny-post-413 '\x01POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n'
seed parse_request tiny-chunked '\x01POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n'
seed parse_request tiny-head-431 '\x01GET / HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nUser-Agent: fuzz-seed/1.0\r\n\r\n'
seed parse_request tiny-five-fields '\x01GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n'
seed parse_request no-slots '\x02GET / HTTP/1.1\r\nHost: x\r\n\r\n'
seed parse_request no-slots-http10 '\x02GET / HTTP/1.0\r\n\r\n'
seed parse_request heap-slots "\\x03GET / HTTP/1.1\\r\\nHost: x\\r\\n${many}\\r\\n"
seed parse_request unlimited '\x04POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\nabc'
seed parse_request unlimited-chunked '\x04POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff0\r\nabc'

# --- chunked: split (2 bytes), limits (0: 1 MiB / 8192, 1: 16 / 8, 2: 0 / 0, 3: 5 / 2, 4: none)
C() { local name=$1 prefix=$2 fmt=$3; shift 3; seed chunked "$name" "$prefix$fmt" "$@"; }
C wiki '\x07\x00\x00' '4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-T: y\r\n\r\nNEXT'
C last-only '\x00\x00\x00' '0\r\n\r\n'
C last-zeros '\x02\x00\x00' '0000\r\n\r\n'
C ext-space '\x03\x00\x00' '5 ; name="va;lue"\r\nhello\r\n0;x\r\n\r\n'
C ext-tab '\x03\x00\x00' '5\t\r\nhello\r\n0\r\n\r\n'
C upper-hex '\x04\x00\x00' 'A\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n'
C sixteen-digits '\x10\x00\x00' '000000000000000a\r\n0123456789\r\n0\r\n\r\n'
C trailers '\x0c\x00\x00' '1\r\nx\r\n0\r\nA: 1\r\nB: 2\r\nC:\r\n\r\nGET / HTTP/1.1\r\n'
C partial-data '\x03\x00\x00' '10\r\nabc'
C partial-size '\x01\x00\x00' 'ff'
C partial-trailer '\x06\x00\x00' '0\r\nX-T: y\r'
C bad-size '\x00\x00\x00' 'x\r\n'
C bad-empty-size '\x00\x00\x00' '\r\n'
C bad-lf-only '\x00\x00\x00' '4\nWiki\r\n'
C bad-data-crlf '\x00\x00\x00' '4\r\nWikiX\r\n'
C bad-size-overflow '\x00\x00\x00' '11111111111111111\r\n'
C bad-size-65-digits '\x00\x00\x00' '00000000000000000000000000000000000000000000000000000000000000001\r\n'
C leading-zeros-17 '\x00\x00\x00' '00000000000000005\r\nhello\r\n0\r\n\r\n'
C bad-size-junk '\x00\x00\x00' '5x\r\nhello\r\n'
C bad-bws-junk '\x00\x00\x00' '5 x\r\nhello\r\n'
C bad-ext-ctl '\x00\x00\x00' '1;a\x01\r\nx\r\n0\r\n\r\n'
C bad-trailer-no-colon '\x00\x00\x00' '0\r\nX-T\r\n\r\n'
C bad-trailer-space-before-colon '\x00\x00\x00' '0\r\nX-T : y\r\n\r\n'
C bad-trailer-ctl '\x00\x00\x00' '0\r\nX-T: a\x01b\r\n\r\n'
C bad-request-as-trailer '\x00\x00\x00' '0\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n'
C trailer-tab-high-bytes '\x00\x00\x00' '0\r\nX-T:\ta\xffb\r\n\r\n'
C bad-negative '\x00\x00\x00' '-1\r\n'
C bad-trailer-lf '\x00\x00\x00' '0\r\n\n'
C bad-trailer-space '\x00\x00\x00' '0\r\n X: y\r\n\r\n'
C bad-ext-lf '\x00\x00\x00' '1;a\nx\r\n'
C bad-ext-nul '\x00\x00\x00' '1;a\x00\r\nx\r\n'
C huge-size '\x00\x00\x00' 'ffffffffffffffff\r\n'
C limit-exact '\x05\x00\x01' '10\r\n0123456789abcdef\r\n0\r\n\r\n'
C limit-over '\x05\x00\x01' '10\r\n0123456789abcdef\r\n1\r\nx\r\n0\r\n\r\n'
C trailer-limit '\x05\x00\x01' '1\r\nx\r\n0\r\nX-Trailer: y\r\n\r\n'
C zero-limits '\x00\x00\x02' '0\r\n\r\n'
C small-limits '\x02\x00\x03' '5\r\nhello\r\n0\r\n\r\n'
C unlimited '\x02\x00\x04' '8000000000000000\r\nabc'

# --- cursor ---------------------------------------------------------------------------------
K() { seed cursor "$@"; }
K id '1795791979:2'
K id-zero '0:0'
K id-leading-zeros '00012:007'
K id-max '18446744073709551615:4294967295'
K id-time-overflow '18446744073709551616:0'
K id-tag-overflow '1:4294967296'
K id-letters 'abc:def'
K id-no-time ':1'
K id-no-tag '1:'
K id-three '1:2:3'
K id-spaces ' 1:2 '
K id-weak-etag 'W/"1:2"'
K id-unicode-digits '\xd9\xa1:\xd9\xa2'
K bytes-time-tag '\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00'
K query '\x01last_event_id=1795791979%%3A2&x=1'
K query-bad '\x01a=b&last_event_id=1%%3Ax'
K if-none-match '\x04\n\n1795791979:3'
K if-none-match-tag-only '\x04\n\n7'
K if-modified-since '\x06\nThu, 01 Jan 2026 00:00:00 GMT\n3'
K if-modified-since-garbage-tag '\x06\nThu, 01 Jan 2026 00:00:00 GMT\ngarbage'
K if-modified-since-epoch '\x06\nThu, 01 Jan 1970 00:00:00 GMT\n0'
K if-modified-since-no-tag '\x02\nThu, 01 Jan 2026 00:00:00 GMT'
K if-modified-since-bad-date '\x06\nyesterday\n1'
K if-modified-since-bad-date-id '\x06\nThu ,0 :000:00 GMT\n1:20'
K etag '\x08\n\n\n5:1'
K last-event-id '\x10\n\n\n\n1795791979:0'
K last-event-id-bad '\x10\n\n\n\n1:x'
K all '\x1f\nlast_event_id=1%%3A1\nSun, 06 Nov 1994 08:49:37 GMT\n4\n2:2\n3:3'

# --- The golden request corpus, when another part of the test suite has written it ------------
shopt -s nullglob
golden=(../tests/corpus/*.request)
for file in "${golden[@]}"; do
  name=$(basename "$file" .request)
  selector='\x00'
  if grep -qs '^max_' "../tests/corpus/$name.config"; then
    selector='\x05'
  fi
  # shellcheck disable=SC2059 # the selector is a printf escape
  { printf "$selector"; cat "$file"; } >"corpus/parse_request/golden-$name"
done
# Their chunked bodies (what follows the head of a request with Transfer-Encoding: chunked) seed
# the chunked target, with the default limits.
for file in "${golden[@]}"; do
  if grep -qai '^transfer-encoding:.*chunked' "$file"; then
    name=$(basename "$file" .request)
    { printf '\x00\x00\x00'; perl -0777 -ne 'print $1 if /\r?\n\r?\n(.*)/s' "$file"; } \
      >"corpus/chunked/golden-$name"
  fi
done
for target in corpus/*/; do
  printf '%s: %d seeds\n' "$(basename "$target")" "$(find "$target" -type f | wc -l)"
done
printf 'golden requests copied: %d\n' "${#golden[@]}"
