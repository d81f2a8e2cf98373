package jsonlimit

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDepth(t *testing.T) {
	for doc, want := range map[string]int{
		``:                          0,
		`1`:                         0,
		`{}`:                        1,
		`[[],[[]]]`:                 3,
		`{"a":"[[[[\"]]]]","b":[]}`: 2,
		`"\\"`:                      0,
		`["\\\"[["]`:                1,
	} {
		if got := Depth([]byte(doc)); got != want {
			t.Errorf("Depth(%s) = %d, want %d", doc, got, want)
		}
	}
	deep := strings.Repeat("[", 65) + strings.Repeat("]", 65)
	if Check([]byte(deep), 64) == nil || Check([]byte(deep), 65) != nil {
		t.Error("Check does not cut at the limit")
	}
}

// For valid JSON, Depth agrees with the depth of the decoded value.
func FuzzDepth(f *testing.F) {
	f.Add([]byte(`{"a":[1,{"b":"]"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 1<<16 {
			return
		}
		var v any
		if json.Unmarshal(b, &v) != nil {
			return
		}
		if got, want := Depth(b), valueDepth(v); got != want {
			t.Fatalf("Depth = %d, decoded depth %d", got, want)
		}
	})
}

func valueDepth(v any) int {
	d := 0
	switch x := v.(type) {
	case map[string]any:
		for _, e := range x {
			d = max(d, valueDepth(e))
		}
		return d + 1
	case []any:
		for _, e := range x {
			d = max(d, valueDepth(e))
		}
		return d + 1
	}
	return 0
}
