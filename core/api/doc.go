// Package api is what the C API serves: a Session (model + tokenizer) and its methods, called
// with msgpack requests and answering msgpack results. Large arrays travel as msgpack bin inside
// {"dtype", "shape", "data"} maps, so Python turns them into numpy arrays without per-element
// work. capi/ stays a thin layer of //export functions over this package.
package api
