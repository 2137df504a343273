package torch

import (
	"strconv"
	"strings"
)

// ShapeString writes a shape the way Python prints one: [2, 10].
func ShapeString(shape []int64) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
