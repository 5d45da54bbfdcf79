package policy

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// canonical is how encoding/json writes doc as a json.RawMessage: the form
// the audit chain hashes.
func canonical(t *testing.T, doc []byte) []byte {
	t.Helper()
	b, err := json.Marshal(json.RawMessage(doc))
	if err != nil {
		t.Fatalf("record is not valid JSON: %v\n%s", err, doc)
	}
	return b
}

func TestRecordReadsBackAsTheSameInput(t *testing.T) {
	args := `{ "query": "select * from t where a < 3 && b > 2", "limit": 10,
	  "big": 12345678901234567890, "opts": {"dry": false}, "bad": "` + "\xff" + `", "sep": "` + "\u2028" + `" }`
	cases := map[string]func() *Input{
		"full": fullInput,
		"raw arguments": func() *Input {
			in := fullInput()
			in.MCP.Arguments, in.MCP.ArgumentsJSON = nil, []byte(args)
			return in
		},
		"empty": func() *Input { return &Input{Version: InputVersion} },
		"numeric id": func() *Input {
			in := fullInput()
			in.MCP.ID = json.Number("42")
			return in
		},
	}
	for name, mk := range cases {
		t.Run(name, func(t *testing.T) {
			in := mk()
			rec, redacted, err := in.AppendRecord(nil, nil)
			if err != nil || redacted != nil {
				t.Fatalf("record: %v %v", err, redacted)
			}
			if got := canonical(t, rec); string(got) != string(rec) {
				t.Fatalf("record is not in encoding/json's form:\n got %s\nwant %s", rec, got)
			}
			back, err := ParseRecord(rec)
			if err != nil {
				t.Fatal(err)
			}
			// What the policy sees: the original and the read-back input
			// build the same document (arguments decoded the way the
			// request path decodes them).
			want := in
			if in.MCP.Task.ID != "" || len(in.MCP.Subscriptions.Tasks) > 0 || in.MCP.ArgumentsJSON != nil {
				// Task ids are never recorded.
				cp := *in
				if cp.MCP.Task.ID != "" {
					cp.MCP.Task.ID = Redacted
				}
				cp.MCP.Subscriptions.Tasks = nil
				for range in.MCP.Subscriptions.Tasks {
					cp.MCP.Subscriptions.Tasks = append(cp.MCP.Subscriptions.Tasks, Redacted)
				}
				want = &cp
			}
			if in.MCP.ArgumentsJSON != nil {
				cp := *want
				dec := json.NewDecoder(bytes.NewReader(in.MCP.ArgumentsJSON))
				dec.UseNumber()
				if err := dec.Decode(&cp.MCP.Arguments); err != nil {
					t.Fatal(err)
				}
				want = &cp
			}
			wv, err := want.Value()
			if err != nil {
				t.Fatal(err)
			}
			bv, err := back.Value()
			if err != nil {
				t.Fatal(err)
			}
			if wv.Compare(bv) != 0 {
				t.Fatalf("read back differs:\n got %v\nwant %v", bv, wv)
			}
			// Recording the read-back input gives the same bytes: a
			// replayed record is recorded identically.
			again, _, err := back.AppendRecord(nil, nil)
			if err != nil || string(again) != string(rec) {
				t.Fatalf("second record differs (%v):\n%s\n%s", err, again, rec)
			}
		})
	}
}

func TestRecordWithCallerEqualsWithout(t *testing.T) {
	in := fullInput()
	plain, _, err := in.AppendRecord(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCaller(in.Subject, in.Client, in.Server, in.Grant, in.Credential)
	if err != nil {
		t.Fatal(err)
	}
	cached := &Input{Version: in.Version, Caller: c, MCP: in.MCP, Request: in.Request}
	with, _, err := cached.AppendRecord(nil, nil)
	if err != nil || string(with) != string(plain) {
		t.Fatalf("with a Caller (%v):\n%s\nwithout:\n%s", err, with, plain)
	}
}

func TestRecordRedactsByConfiguration(t *testing.T) {
	r := NewRedaction([]RedactRule{
		{Arguments: []string{"password"}},          // every server
		{Server: "hr", Arguments: []string{"ssn"}}, // one server, one argument
		{Server: "vault"},                          // every argument of a server
	})
	args := `{"password":"hunter2","ssn":"123-45-6789","name":"bob"}`
	cases := []struct {
		server       string
		wantRedacted []string
		wantArgs     map[string]any
	}{
		{"bi", []string{"password"}, map[string]any{"password": Redacted, "ssn": "123-45-6789", "name": "bob"}},
		{"hr", []string{"password", "ssn"}, map[string]any{"password": Redacted, "ssn": Redacted, "name": "bob"}},
		{"vault", []string{"name", "password", "ssn"}, map[string]any{"password": Redacted, "ssn": Redacted, "name": Redacted}},
	}
	for _, tc := range cases {
		t.Run(tc.server, func(t *testing.T) {
			in := &Input{Version: InputVersion, Server: Server{Name: tc.server}, MCP: MCP{Method: "tools/call", Tool: "t", ArgumentsJSON: []byte(args)}}
			rec, redacted, err := in.AppendRecord(nil, r)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(redacted, tc.wantRedacted) {
				t.Fatalf("redacted %v, want %v", redacted, tc.wantRedacted)
			}
			back, err := ParseRecord(rec)
			if err != nil {
				t.Fatal(err)
			}
			var got map[string]any
			_ = json.Unmarshal(back.MCP.ArgumentsJSON, &got)
			if !reflect.DeepEqual(got, tc.wantArgs) {
				t.Fatalf("recorded arguments %v, want %v", got, tc.wantArgs)
			}
			if string(canonical(t, rec)) != string(rec) {
				t.Fatalf("redacted record is not canonical: %s", rec)
			}
		})
	}
}
