package bearer

import "testing"

func TestToken(t *testing.T) {
	for _, c := range []struct {
		header, token string
		present       bool
	}{
		{"", "", false},
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER  abc ", "abc", true},
		{"  Bearer abc", "abc", true},
		{"Basic abc", "", true},
		{"Bearer", "", true},
		{"Bearer ", "", true},
		{"Bearer a b", "", true},
		{"Bearer a,b", "", true},
		{"Bearer a\tb", "", true},
		{"Bearerabc", "", true},
	} {
		tok, present := Token(c.header)
		if tok != c.token || present != c.present {
			t.Errorf("Token(%q) = %q, %v; want %q, %v", c.header, tok, present, c.token, c.present)
		}
	}
}
