#!/usr/bin/env python3
"""Build a HuggingFace `tokenizers` tokenizer.json equivalent to open_clip's SimpleTokenizer
(the OpenAI CLIP BPE, `bpe_simple_vocab_16e6.txt.gz`), as used by MMAudio via
`open_clip.get_tokenizer('ViT-H-14-378-quickgelu')` for apple/DFN5B-CLIP-ViT-H-14-384.

Usage:  python scripts/make-clip-tokenizer.py OUT.json     (needs: pip install open_clip_torch tokenizers)

The tokenizer.json only produces the BPE ids of the text (no post-processor). The caller must do what
open_clip's SimpleTokenizer.__call__ does:
    ids = [49406] + encode(text).ids + [49407]          # <start_of_text>, <end_of_text>
    if len(ids) > 77: ids = ids[:77]; ids[76] = 49407   # truncate, force last = <end_of_text>
    ids += [0] * (77 - len(ids))                         # pad with 0
Differences to open_clip that a tokenizer.json cannot express: open_clip first runs
`ftfy.fix_text` (mojibake repair, NFC, ...) and `html.unescape` twice ("&amp;" -> "&"); only NFC,
whitespace collapsing, lower-casing and ftfy's ligature / curly-quote replacements are reproduced here.
r2v cleans prompts itself before this (`r2v_wan::text::clean_prompt`: HTML entities twice and
ftfy's fixes for well-formed text), so of open_clip's cleaning only mojibake repair is missing.
"""
import gzip
import json
import sys


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def default_bpe_path():
    import open_clip.tokenizer as oct
    return oct.default_bpe()


def vocab_and_merges(bpe_path):
    """Exactly open_clip.tokenizer.SimpleTokenizer.__init__ (= openai/CLIP simple_tokenizer)."""
    merges = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = merges[1:49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    for m in merges:
        vocab.append("".join(m))
    vocab.extend(["<start_of_text>", "<end_of_text>"])
    return {t: i for i, t in enumerate(vocab)}, merges


# ftfy.chardata.LIGATURES (ftfy 6.x), applied by ftfy.fix_text's fix_latin_ligatures.
FTFY_LIGATURES = {
    "\u0132": "IJ", "\u0133": "ij", "\u0149": "\u02bcn", "\u01f1": "DZ", "\u01f2": "Dz", "\u01f3": "dz",
    "\u01c4": "D\u017d", "\u01c5": "D\u017e", "\u01c6": "d\u017e", "\u01c7": "LJ", "\u01c8": "Lj",
    "\u01c9": "lj", "\u01ca": "NJ", "\u01cb": "Nj", "\u01cc": "nj", "\ufb00": "ff", "\ufb01": "fi",
    "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "\u017ft", "\ufb06": "st",
}

# open_clip's SimpleTokenizer regex (the special-token alternatives are handled as added tokens).
CLIP_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""


def build_tokenizer(bpe_path=None):
    from tokenizers import Tokenizer, Regex, AddedToken, normalizers, pre_tokenizers, decoders
    from tokenizers.models import BPE

    vocab, merges = vocab_and_merges(bpe_path or default_bpe_path())
    assert len(vocab) == 49408, len(vocab)
    tok = Tokenizer(BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix="</w>",
                        fuse_unk=False, unk_token=None, dropout=None))
    # open_clip 'lower' clean: ftfy.fix_text (includes NFC) -> html.unescape x2 -> strip
    #   -> " ".join(text.split()) -> lower()
    # The ftfy steps that are plain character replacements are reproduced (fix_latin_ligatures,
    # uncurl_quotes, in ftfy's order); mojibake repair, fix_character_width and html.unescape are not.
    tok.normalizer = normalizers.Sequence(
        [normalizers.Replace(k, v) for k, v in FTFY_LIGATURES.items()] + [
        normalizers.Replace(Regex("[\u02bc\u2018-\u201b]"), "'"),
        normalizers.Replace(Regex("[\u201c-\u201f]"), '"'),
        normalizers.NFC(),
        normalizers.Replace(Regex(r"\s+"), " "),
        normalizers.Strip(),
        normalizers.Lowercase(),
    ])
    # re.findall(pat, text): keep the matches, drop everything else (whitespace);
    # then map utf-8 bytes to the GPT-2 byte alphabet.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_PATTERN), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
    ])
    # decode: bytes back to utf-8, "</w>" -> " " (like SimpleTokenizer.decode), minus the trailing space
    tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace("</w>", " "), decoders.Strip(" ", 0, 1)])
    # open_clip's regex also matches the literal special-token strings (after lower-casing).
    tok.add_special_tokens([AddedToken("<start_of_text>", special=True, normalized=True),
                            AddedToken("<end_of_text>", special=True, normalized=True)])
    assert tok.token_to_id("<start_of_text>") == 49406 and tok.token_to_id("<end_of_text>") == 49407
    return tok


def clip_ids(tok, text, context_length=77, sot=49406, eot=49407):
    """Reference for the Rust side: open_clip SimpleTokenizer.__call__ on top of tokenizer.json."""
    ids = [sot] + tok.encode(text, add_special_tokens=False).ids + [eot]
    if len(ids) > context_length:
        ids = ids[:context_length]
        ids[-1] = eot
    return ids + [0] * (context_length - len(ids))


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    tok = build_tokenizer()
    tok.save(sys.argv[1], pretty=False)
    print(f"wrote {sys.argv[1]} (vocab {tok.get_vocab_size()})")


if __name__ == "__main__":
    main()
