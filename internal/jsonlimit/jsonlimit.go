// Package jsonlimit measures how deeply a JSON text nests, before it is
// decoded: encoding/json and the policy engines recurse per level, so a
// hostile document is refused on its shape first. One scanner serves every
// parser of untrusted JSON in the module.
package jsonlimit

import "fmt"

// Depth returns the maximum nesting depth of arrays and objects in the JSON
// text b. Brackets inside strings do not count. It does not validate b.
func Depth(b []byte) int {
	depth, maxDepth := 0, 0
	inString, escaped := false, false
	for _, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '[', '{':
			depth++
			maxDepth = max(maxDepth, depth)
		case ']', '}':
			depth--
		}
	}
	return maxDepth
}

// Check reports an error when b nests arrays and objects deeper than
// maxDepth.
func Check(b []byte, maxDepth int) error {
	if d := Depth(b); d > maxDepth {
		return fmt.Errorf("JSON nesting exceeds %d levels", maxDepth)
	}
	return nil
}
