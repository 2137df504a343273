module github.com/simplescope/simplescope

go 1.25

require (
	github.com/klauspost/compress v1.20.4
	github.com/sugarme/tokenizer v0.3.0
	github.com/vmihailenco/msgpack/v5 v5.4.1
	golang.org/x/text v0.25.0
)

require (
	github.com/emirpasic/gods v1.18.1 // indirect
	github.com/mitchellh/colorstring v0.0.0-20190213212951-d06e56a500db // indirect
	github.com/patrickmn/go-cache v2.1.0+incompatible // indirect
	github.com/rivo/uniseg v0.4.7 // indirect
	github.com/schollz/progressbar/v2 v2.15.0 // indirect
	github.com/sugarme/regexpset v0.0.0-20200920021344-4d4ec8eaf93c // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
)
