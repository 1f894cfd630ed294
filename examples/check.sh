#!/bin/sh
# Builds examples/ as a user of an installed vit would, through pkg-config
# (PKG_CONFIG_PATH must lead to PREFIX's vit.pc), linked against the shared
# library and then the static one, and runs each on the shipped model.
#
#     sh examples/check.sh PREFIX OUTDIR
set -eu
prefix=$1
out=$2
mkdir -p "$out"
cc=${CC:-cc}
echo "vit $(pkg-config --modversion vit) in $prefix"
$cc -std=c11 -Wall -Wextra -Werror examples/classify.c \
    $(pkg-config --cflags --libs vit) -o "$out/classify"
$cc -std=c11 -Wall -Wextra -Werror examples/classify.c \
    $(pkg-config --cflags vit) -static-libgcc \
    -Wl,-Bstatic $(pkg-config --libs-only-L vit) -lvit -Wl,-Bdynamic \
    $(pkg-config --static --libs vit | sed 's/-lvit\b//') \
    -o "$out/classify-static"
for exe in classify classify-static; do
    got=$(LD_LIBRARY_PATH="$prefix/lib" "$out/$exe" models/vit-digits \
        models/samples/seven.jpg)
    echo "$exe: $got"
    case $got in
    *"seven "*) ;;
    *) echo "examples/check.sh: $exe did not read the seven" >&2; exit 1 ;;
    esac
done
# A CLIP: the image of a seven matches "the number seven" best.
$cc -std=c11 -Wall -Wextra -Werror examples/match.c \
    $(pkg-config --cflags --libs vit) -o "$out/match"
got=$(LD_LIBRARY_PATH="$prefix/lib" "$out/match" models/clip-digits \
    models/samples/seven.jpg "a handwritten seven." "a handwritten two." \
    "a handwritten zero.")
echo "match: $got"
best=$(printf '%s\n' "$got" | sort -r | head -n 1)
case $best in
*"seven."*) ;;
*) echo "examples/check.sh: match did not prefer the seven" >&2; exit 1 ;;
esac
# The shared one needs libvit.so.MAJOR, found in the prefix; the static one
# holds the library itself.
LD_LIBRARY_PATH="$prefix/lib" ldd "$out/classify" |
    grep -q "libvit.so.[0-9]* => $prefix/lib/" ||
    { echo "examples/check.sh: classify is not linked to $prefix/lib" >&2;
      exit 1; }
if ldd "$out/classify-static" | grep -q libvit; then
    echo "examples/check.sh: classify-static links libvit.so" >&2
    exit 1
fi
# The service client, against the installed `vit serve` on a socket of
# its own: the seven's bytes come back labelled seven.
$cc -std=c11 -Wall -Wextra -Werror examples/client.c \
    $(pkg-config --cflags --libs vit-service) -o "$out/client"
sock="ipc://$out/serve.sock"
"$prefix/bin/vit" serve --model models/vit-digits --bind "$sock" \
    2>"$out/serve.log" &
serve=$!
trap 'kill $serve 2>/dev/null' EXIT
got=$(LD_LIBRARY_PATH="$prefix/lib" "$out/client" "$sock" \
    models/samples/seven.jpg)
echo "client: $got"
kill -TERM $serve
wait $serve || { echo "examples/check.sh: vit serve failed:" >&2;
                 cat "$out/serve.log" >&2; exit 1; }
trap - EXIT
case $got in
*'"label": "seven'*|*'"label":"seven'*) ;;
*) echo "examples/check.sh: the client did not get the seven" >&2; exit 1 ;;
esac
echo "examples: built against $prefix and run"
