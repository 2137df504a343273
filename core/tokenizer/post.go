package tokenizer

// postProcessor is tokenizer.json's post_processor as HF's encode(text, add_special_tokens=True)
// applies it to one sequence.
type postProcessor interface {
	single(ids []int) []int
}

// identityPost is the ByteLevel post-processor (it only trims offsets, which ids do not carry).
type identityPost struct{}

func (identityPost) single(ids []int) []int { return ids }

// templatePost is TemplateProcessing's "single" template: the sequence ($A) and special tokens.
type templatePost struct {
	pieces []templatePiece
}

type templatePiece struct {
	seq bool  // $A
	ids []int // a special token's ids
}

func (p templatePost) single(ids []int) []int {
	n := 0
	for _, pc := range p.pieces {
		if pc.seq {
			n += len(ids)
		} else {
			n += len(pc.ids)
		}
	}
	out := make([]int, 0, n)
	for _, pc := range p.pieces {
		if pc.seq {
			out = append(out, ids...)
		} else {
			out = append(out, pc.ids...)
		}
	}
	return out
}

// leadingSpecial is the special token the template puts before the sequence when it is a single
// id (e.g. Llama's "<s> $A"), or -1.
func (p templatePost) leadingSpecial() int {
	if len(p.pieces) > 1 && !p.pieces[0].seq && len(p.pieces[0].ids) == 1 {
		return p.pieces[0].ids[0]
	}
	return -1
}

type postSequence []postProcessor

func (q postSequence) single(ids []int) []int {
	for _, p := range q {
		ids = p.single(ids)
	}
	return ids
}
