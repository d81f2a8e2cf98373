package client

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseResourceURI(t *testing.T) {
	tests := []struct {
		in       string
		want     ResourceURI
		endpoint string
		canon    string
	}{
		{"kbs:///default/key/1", ResourceURI{Plugin: "resource", Path: []string{"default", "key", "1"}}, "/kbs/v0/resource/default/key/1", "kbs:///default/key/1"},
		{"default/key/1", ResourceURI{Plugin: "resource", Path: []string{"default", "key", "1"}}, "/kbs/v0/resource/default/key/1", "kbs:///default/key/1"},
		{"/default/key/1", ResourceURI{Plugin: "resource", Path: []string{"default", "key", "1"}}, "/kbs/v0/resource/default/key/1", "kbs:///default/key/1"},
		{"kbs://kbs.example:8080/a/b/c?v=1&x=y", ResourceURI{Address: "kbs.example:8080", Plugin: "resource", Path: []string{"a", "b", "c"}, Query: "v=1&x=y"}, "/kbs/v0/resource/a/b/c?v=1&x=y", "kbs://kbs.example:8080/a/b/c?v=1&x=y"},
		{"kbs+pkcs11:///slot/key", ResourceURI{Plugin: "pkcs11", Path: []string{"slot", "key"}}, "/kbs/v0/pkcs11/slot/key", "kbs+pkcs11:///slot/key"},
		{"kbs+nebula-ca:///credential?ip=1.2.3.4/24", ResourceURI{Plugin: "nebula-ca", Path: []string{"credential"}, Query: "ip=1.2.3.4/24"}, "/kbs/v0/nebula-ca/credential?ip=1.2.3.4/24", "kbs+nebula-ca:///credential?ip=1.2.3.4/24"},
		{"my_repo/resource_type/123abc.v2", ResourceURI{Plugin: "resource", Path: []string{"my_repo", "resource_type", "123abc.v2"}}, "/kbs/v0/resource/my_repo/resource_type/123abc.v2", "kbs:///my_repo/resource_type/123abc.v2"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseResourceURI(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("= %+v, want %+v", got, tt.want)
			}
			p, q := got.endpoint()
			if q != "" {
				p += "?" + q
			}
			if p != tt.endpoint {
				t.Errorf("endpoint = %q, want %q", p, tt.endpoint)
			}
			if got.String() != tt.canon {
				t.Errorf("String = %q, want %q", got.String(), tt.canon)
			}
		})
	}
	for _, bad := range []string{
		"", "a/b", "a/b/c/d", "a//c", "a/../c", "./b/c", "https:///a/b/c", "kbs+:///a/b/c",
		"kbs:///a/b", "kbs:", "kbs://host", "a/b/c#frag", "a/b c/d", "a/b/c\n", "a/%zz/c",
		"a/b/c?x=%zz", "kbs+a/b:///x", strings.Repeat("a/", 3000) + "a",
	} {
		if _, err := ParseResourceURI(bad); !errors.Is(err, ErrInvalidResourceURI) {
			t.Errorf("ParseResourceURI(%.40q) = %v, want ErrInvalidResourceURI", bad, err)
		}
	}
}
