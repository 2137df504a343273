// Package weights reads model weights from a Hugging Face model folder without loading them:
// Open builds an index of the tensors, and Bytes hands out one tensor at a time as a slice of
// its little-endian, row-major bytes, backed by a read-only memory map of the checkpoint file
// (zero copy). Loading a 24 GB checkpoint therefore never holds a private copy of it: the pages
// belong to the page cache and the kernel can drop them.
//
// Formats:
//   - model.safetensors, or shards listed by model.safetensors.index.json;
//   - pytorch_model.bin in the zip format torch.save writes since PyTorch 1.6 (a pickle,
//     data.pkl, naming storages that are stored uncompressed as zip entries data/<key>), or
//     shards listed by pytorch_model.bin.index.json. The pickle is read by a small unpickler
//     of its own (pickle.go) that knows only what torch.save emits for a state dict
//     (OrderedDict, _rebuild_tensor_v2, _rebuild_parameter, persistent storages); it never
//     executes anything. Tensors that are views (a storage offset, several tensors sharing a
//     storage) are served from the shared storage bytes; a non-contiguous tensor (a
//     transpose) is copied once into Go memory, kept until Close.
//
// Open accepts a model folder, an HF cache snapshot folder (models--org--name/snapshots/<rev>,
// whose files are symlinks into ../../blobs; they are followed), the cache repository folder
// itself (models--org--name, resolved through refs/main), or a single weight file.
// Safetensors wins when both formats are present.
//
// Old GPT-J checkpoints (EleutherAI/gpt-j-6b's pytorch_model.bin) carry the non-persistent
// attention buffers transformer.h.N.attn.bias and attn.masked_bias. They are listed like any
// other tensor (listing them costs nothing); IsAttentionBuffer tells a caller which keys to
// skip.
//
// The byte slices returned by Bytes are read-only (writing to them faults) and valid until
// Close. Corrupt input (a truncated header, a damaged zip, an unexpected pickle) is reported
// as an error naming the file and, where known, the key; the parsers never panic (they are
// fuzzed: see fuzz_test.go).
package weights
