package tokenizer

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/simplescope/simplescope/internal/testutil"
)

// The family tests train small tokenizers of each kind with HF `tokenizers` (no downloads) on
// part of the corpus, then compare this package with HF on the files they produce.

// families are the tokenizer kinds testdata/hf_ref.py trains: GPT-2 (ByteLevel with the GPT-2
// regex), GPT-NeoX (the same with NFC and normalized added tokens), Llama 3 (Split with its
// regex, ByteLevel, ignore_merges, a BOS template), Qwen2 (NFC, Split with its regex, no BOS),
// Llama 2 (SentencePiece-style BPE with byte fallback: Prepend/Replace normalizer, decoder
// Replace+ByteFallback+Fuse+Strip) and Mistral (the same model with the Metaspace
// pre-tokenizer and decoder, prepend_scheme "first").
var families = []string{"gpt2", "neox", "llama3", "qwen2", "llama2", "mistral"}

const (
	trainDocs  = 1500 // corpus documents the tokenizers are trained on
	trainVocab = 3000
)

var (
	familyRootOnce sync.Once
	familyRoot     string
	familyRootErr  error
	familyMu       sync.Mutex
	familyOnce     = map[string]*sync.Once{}
	familyErr      = map[string]*error{}
)

func TestMain(m *testing.M) {
	code := m.Run()
	if familyRoot != "" {
		_ = os.RemoveAll(familyRoot)
	}
	os.Exit(code)
}

// familyDir trains the tokenizer of kind once per test binary and returns its directory
// (tokenizer.json + tokenizer_config.json).
func familyDir(t testing.TB, kind string) string {
	t.Helper()
	familyRootOnce.Do(func() { familyRoot, familyRootErr = os.MkdirTemp("", "tokenizer-families-") })
	if familyRootErr != nil {
		t.Fatal(familyRootErr)
	}
	familyMu.Lock()
	once, ok := familyOnce[kind]
	if !ok {
		once, familyErr[kind] = &sync.Once{}, new(error)
		familyOnce[kind] = once
	}
	errp := familyErr[kind]
	familyMu.Unlock()
	dir := filepath.Join(familyRoot, kind)
	once.Do(func() {
		texts := filepath.Join(familyRoot, "train.jsonl")
		if _, err := os.Stat(texts); err != nil {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			for _, d := range corpus(t)[:trainDocs] {
				_ = enc.Encode(map[string]string{"text": d})
			}
			tmp := texts + ".tmp"
			if *errp = os.WriteFile(tmp, buf.Bytes(), 0o644); *errp != nil {
				return
			}
			if *errp = os.Rename(tmp, texts); *errp != nil {
				return
			}
		}
		testutil.RunPython(t, filepath.Join("testdata", "hf_ref.py"), "train", kind, texts, dir, strconv.Itoa(trainVocab))
	})
	if *errp != nil {
		t.Fatalf("train %s: %v", kind, *errp)
	}
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		t.Fatalf("train %s: %v", kind, err)
	}
	return dir
}

// hfRef is HF's result for one text: ids without special tokens, with them (Pre + IDs + Post),
// and the decode of the ids.
type hfRef struct {
	IDs     []int   `json:"ids"`
	Pre     []int   `json:"pre"`
	Post    []int   `json:"post"`
	Text    *string `json:"text"` // nil: the input text
	Special []int   `json:"-"`
}

// hfRefs runs hf_ref.py ref on texts with the tokenizer.json at path.
func hfRefs(t testing.TB, path string, texts []string) []hfRef {
	t.Helper()
	out := testutil.RunPython(t, filepath.Join("testdata", "hf_ref.py"), "ref", path, writeTexts(t, texts))
	refs := make([]hfRef, 0, len(texts))
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<28)
	for sc.Scan() {
		var r hfRef
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("hf_ref.py ref output: %v", err)
		}
		if len(refs) < len(texts) && r.Text == nil {
			r.Text = &texts[len(refs)]
		}
		r.Special = append(append(append([]int{}, r.Pre...), r.IDs...), r.Post...)
		refs = append(refs, r)
	}
	if len(refs) != len(texts) {
		t.Fatalf("hf_ref.py ref: %d results for %d texts", len(refs), len(texts))
	}
	return refs
}

// hfDecodeWith runs hf_ref.py decode: HF's decode(ids, skip_special_tokens=False) of each
// sequence.
func hfDecodeWith(t testing.TB, path string, seqs [][]int) []string {
	t.Helper()
	var buf bytes.Buffer
	for _, s := range seqs {
		if s == nil {
			s = []int{}
		}
		b, _ := json.Marshal(s)
		buf.Write(b)
		buf.WriteByte('\n')
	}
	in := filepath.Join(t.TempDir(), "ids.jsonl")
	if err := os.WriteFile(in, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	out := testutil.RunPython(t, filepath.Join("testdata", "hf_ref.py"), "decode", path, in)
	var texts []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var s string
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("hf_ref.py decode output: %v", err)
		}
		texts = append(texts, s)
	}
	if len(texts) != len(seqs) {
		t.Fatalf("hf_ref.py decode: %d results for %d sequences", len(texts), len(seqs))
	}
	return texts
}

// adversarial are strings that stress pre-tokenizers, normalizers, byte fallback and added
// tokens; the families' special tokens are written into some of them.
var adversarial = []string{
	"", " ", "  ", "\n", "\t", "a", "x ", " x", "  x", "x  ",
	"a\n\n\n  b", "   \t\t  \n", " \u00a0 \u3000x\u2009y\u2028z\u0085w", "x \r\n\r\n y", "\r\r\n\n\r", "\n \n \n",
	"line one\r\nline two\r\n\r\nend", "a \nb", "tabs\tand\t\tmore\t", " \n\t x \t\n y", strings.Repeat(" ", 300) + "x",
	strings.Repeat("\n", 50), strings.Repeat(" \n", 40) + "end", "trailing   ", "\v\f\v",
	"I'LL WE'VE it'ſ you'RE he'D 'Ll 'S 'ſ x'K", "don’t it's ''s 's's 'x '", "rock'n'roll 'twas o'clock",
	"1234567890", "12 345 6789 0", "٣٤٥ ²³ ⅫⅪ 1½ ①②", "3.14159e-10 -42 +7 1,000,000", "abc123def 4th",
	"I ❤️ 🍕 and 😀😃", "👍🏽👨‍👩‍👧🏳️‍🌈", "🇫🇷🇩🇪", "😀x😀 😀", strings.Repeat("🙂", 60),
	"Hello мир 世界 مرحبا שלום नमस्ते ສະບາຍດີ", "日本語とEnglishの混在123テスト。", "Привет, мир! Ёжик", "한국어 텍스트",
	"𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ꙮ 𓂀 ﷽ ☃ ⍼", "\ue000\U000F0000", "\u0378\U0001FAFF", "ǅ ǆ ß ẞ ﬁ ﬂ ﬀ ﬃ",
	"e\u0301 é n\u0303 a\u0308\u0308 क्षि", "ﬁ ﬂ Ⅻ ㎏ ｆｕｌｌｗｉｄｔｈ ＡＢＣ１２３ ½", "\u212b \u00c5 \u2126", "İstanbul ΣΑΣ σας",
	"\x00\x01\x1b[0m\x7f", "\ufeffBOM", "a\u200bb\u200cc\u200dd", "a\ufffdb",
	"▁already▁metaspace", "a▁b ▁ ▁▁", "<0x41><0xE4> <unk>", "func main() {\n\tfmt.Println(\"hi\")\n}\n",
	"!!! ... ?!?! --- === ((())) {}[]<>", "(hello) [x] \"quoted\" 'single'", "#include <stdio.h>\n",
	"hello<|endoftext|>world", "a <|endoftext|> b <|endoftext|><|endoftext|>", "<|endoftext|", "<|",
	"x<s>y</s>z", "<s><s>", " <s> ", "<s>hello", "hello <s> world", "</s>", "<unk>",
	"foosimplescopebar", "simplescope simplescope", "  simplescope", "simplescope", "Simplescope",
	"<|begin_of_text|>Hi<|eot_id|>", "<|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
	"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "<|reserved_special_token_0|>x",
	"x" + strings.Repeat(" ", 24) + "y" + strings.Repeat(" ", 9) + "z", "        8 spaces", "    4", "  2",
	strings.Repeat("abc", 200), strings.Repeat("=-", 300), strings.Repeat("ab ", 300),
}
