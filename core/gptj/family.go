package gptj

import (
	"fmt"
	"sort"
	"strings"
)

// A Family is what sets one decoder family apart from another, as data: the choices one
// blockForward reads, and the checkpoint names of the weights. The sizes and the switches a
// config.json sets (biases, rotary fraction and scaling, tied head, sliding windows) are in
// Config; the family holds what every checkpoint of that model_type shares.
//
//	family    norm  positions        qkv            mlp    residual      extra
//	gptj      LN    rotary (pairs)   separate       plain  parallel (1)  —
//	gpt_neox  LN    rotary (halves)  fused per head plain  parallel (2)  use_parallel_residual false: sequential
//	gpt2      LN    learned (wpe)    fused (Conv1D) plain  sequential    Conv1D weights (in, out)
//	llama     RMS   rotary (halves)  separate       gated  sequential    grouped-query attention
//	mistral   RMS   rotary (halves)  separate       gated  sequential    sliding window
//	qwen2     RMS   rotary (halves)  separate       gated  sequential    QKV biases, windows on upper layers
//	qwen3     RMS   rotary (halves)  separate       gated  sequential    q/k RMSNorm per head
//	gemma     RMS+1 rotary (halves)  separate       gated  sequential    embedding × sqrt(hidden), GeGLU
type Family struct {
	ModelType string
	Norm      NormKind
	Rotary    RotaryKind // RotaryNone: learned positions (Names.Pos)
	QKV       QKVLayout
	MLP       MLPKind
	// Residual is how attention and MLP combine; a family whose config chooses (NeoX's
	// use_parallel_residual) is set from Config.ParallelResidual when the config is read.
	Residual ResidualKind
	QKNorm   bool // an RMSNorm over each query and key head before the rotary (Qwen3)
	Conv1D   bool // weights stored (in, out) as GPT-2's Conv1D, not nn.Linear's (out, in)
	// ScaleEmbed multiplies the token embedding by sqrt(hidden size), rounded to the model dtype
	// (Gemma).
	ScaleEmbed bool
	Names      Names
}

// NormKind is the normalization of the block inputs and the final norm.
type NormKind int

const (
	LayerNorm      NormKind = iota // (x − mean) / std · w + b
	RMSNorm                        // x / rms(x) · w (HF's LlamaRMSNorm)
	RMSNormPlusOne                 // x / rms(x) · (1 + w) in float32 (HF's GemmaRMSNorm)
)

// RotaryKind is how positions enter.
type RotaryKind int

const (
	RotaryPairs  RotaryKind = iota // GPT-J: dims (2i, 2i+1) rotate together (rotate_every_two)
	RotaryHalves                   // NeoX, Llama: dims i and i + rot/2 rotate together (rotate_half)
	RotaryNone                     // no rotary: learned absolute positions added to the embedding
)

// QKVLayout is how the query, key and value projections are stored.
type QKVLayout int

const (
	QKVSeparate     QKVLayout = iota // q_proj, k_proj, v_proj
	QKVFused                         // one projection, rows [q | k | v] (GPT-2's c_attn)
	QKVFusedPerHead                  // one projection, rows [head][q | k | v] (NeoX's query_key_value)
)

// MLPKind is the feed-forward network.
type MLPKind int

const (
	MLPPlain MLPKind = iota // down(act(up(x)))
	MLPGated                // down(act(gate(x)) · up(x)) (SwiGLU with silu)
)

// ResidualKind is how a block adds attention and MLP to the residual x.
type ResidualKind int

const (
	ParallelOneNorm ResidualKind = iota // x + attn(n(x)) + mlp(n(x)), one norm (GPT-J)
	ParallelTwoNorm                     // x + attn(n1(x)) + mlp(n2(x)) (NeoX)
	Sequential                          // y = x + attn(n1(x)); y + mlp(n2(y))
)

// Names are the checkpoint names of a family's weights, without ".weight" / ".bias". Base is
// the base model's prefix ("transformer.", "model.", "gpt_neox."): a checkpoint of the base
// model alone (GPT-2 on the Hub) stores the names without it, and Load accepts both. Head
// names are outside Base; the first one present is the unembedding. Layer names are under
// fmt.Sprintf(Layer, l). An empty name is a weight the family does not have.
type Names struct {
	Base      string
	Embed     string
	Pos       string // learned positions
	FinalNorm string
	Head      []string

	Layer        string
	Norm1, Norm2 string
	Q, K, V      string
	QKV          string
	O            string
	QNorm, KNorm string
	Gate, Up     string
	Down         string
}

var llamaNames = Names{
	Base: "model.", Embed: "embed_tokens", FinalNorm: "norm", Head: []string{"lm_head"},
	Layer: "layers.%d.", Norm1: "input_layernorm", Norm2: "post_attention_layernorm",
	Q: "self_attn.q_proj", K: "self_attn.k_proj", V: "self_attn.v_proj", O: "self_attn.o_proj",
	Gate: "mlp.gate_proj", Up: "mlp.up_proj", Down: "mlp.down_proj",
}

func llamaLike(modelType string, qkNorm bool) Family {
	n := llamaNames
	if qkNorm {
		n.QNorm, n.KNorm = "self_attn.q_norm", "self_attn.k_norm"
	}
	return Family{ModelType: modelType, Norm: RMSNorm, Rotary: RotaryHalves, QKV: QKVSeparate, MLP: MLPGated,
		Residual: Sequential, QKNorm: qkNorm, Names: n}
}

// families are the supported families by model_type (config.Supported lists the same).
var families = map[string]Family{
	"gptj": {ModelType: "gptj", Norm: LayerNorm, Rotary: RotaryPairs, QKV: QKVSeparate, MLP: MLPPlain, Residual: ParallelOneNorm,
		Names: Names{
			Base: "transformer.", Embed: "wte", FinalNorm: "ln_f", Head: []string{"lm_head"},
			Layer: "h.%d.", Norm1: "ln_1",
			Q: "attn.q_proj", K: "attn.k_proj", V: "attn.v_proj", O: "attn.out_proj",
			Up: "mlp.fc_in", Down: "mlp.fc_out",
		}},
	"gpt_neox": {ModelType: "gpt_neox", Norm: LayerNorm, Rotary: RotaryHalves, QKV: QKVFusedPerHead, MLP: MLPPlain, Residual: ParallelTwoNorm,
		Names: Names{
			// the Hub's checkpoints name the unembedding embed_out; transformers 5 models call
			// it lm_head (and write embed_out back when saving)
			Base: "gpt_neox.", Embed: "embed_in", FinalNorm: "final_layer_norm", Head: []string{"embed_out", "lm_head"},
			Layer: "layers.%d.", Norm1: "input_layernorm", Norm2: "post_attention_layernorm",
			QKV: "attention.query_key_value", O: "attention.dense",
			Up: "mlp.dense_h_to_4h", Down: "mlp.dense_4h_to_h",
		}},
	"gpt2": {ModelType: "gpt2", Norm: LayerNorm, Rotary: RotaryNone, QKV: QKVFused, MLP: MLPPlain, Residual: Sequential, Conv1D: true,
		Names: Names{
			Base: "transformer.", Embed: "wte", Pos: "wpe", FinalNorm: "ln_f", Head: []string{"lm_head"},
			Layer: "h.%d.", Norm1: "ln_1", Norm2: "ln_2",
			QKV: "attn.c_attn", O: "attn.c_proj",
			Up: "mlp.c_fc", Down: "mlp.c_proj",
		}},
	"llama":   llamaLike("llama", false),
	"mistral": llamaLike("mistral", false),
	"qwen2":   llamaLike("qwen2", false),
	"qwen3":   llamaLike("qwen3", true),
	"gemma":   gemma(),
}

func gemma() Family {
	f := llamaLike("gemma", false)
	f.Norm, f.ScaleEmbed = RMSNormPlusOne, true
	return f
}

// FamilyOf returns the family of a model_type.
func FamilyOf(modelType string) (Family, error) {
	f, ok := families[modelType]
	if !ok {
		known := make([]string, 0, len(families))
		for k := range families {
			known = append(known, k)
		}
		sort.Strings(known)
		return Family{}, fmt.Errorf("model_type %q is not supported (supported: %s)", modelType, strings.Join(known, ", "))
	}
	return f, nil
}

// Supported activations: the plain MLP's, or the gated MLP's gate.
var activations = map[string]bool{
	"gelu_new": true, "gelu_pytorch_tanh": true, "gelu_fast": true, // the tanh approximation
	"gelu": true,                // exact (erf)
	"silu": true, "swish": true, // x·sigmoid(x)
}
