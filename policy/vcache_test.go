package policy

import (
	"context"
	"fmt"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

func TestVCacheSemantics(t *testing.T) {
	for _, n := range []int{3, linearMax, linearMax + 1, 200} { // below and above the index threshold
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			c := getVCache()
			defer putVCache(c)
			ref := func(i int) ast.Ref { return ast.MustParseRef(fmt.Sprintf("data.p.q[%d]", i)) }

			for i := range n {
				r := ref(i)
				if i%5 == 0 {
					c.Put(r, nil) // undefined
				} else {
					c.Put(r, ast.IntNumberTerm(i))
				}
				r[len(r)-1] = ast.StringTerm("clobbered") // the caller may reuse its slice
			}
			check := func() {
				t.Helper()
				for i := range n {
					v, undefined := c.Get(ref(i))
					switch {
					case i%5 == 0 && (!undefined || v != nil):
						t.Fatalf("%d: want undefined, got %v %v", i, v, undefined)
					case i%5 != 0 && (undefined || v == nil || !v.Equal(ast.IntNumberTerm(i))):
						t.Fatalf("%d: got %v %v", i, v, undefined)
					}
				}
				if v, undefined := c.Get(ref(n + 1)); v != nil || undefined {
					t.Fatal("uncached ref found")
				}
			}
			check()

			// Overwrite keeps one entry.
			c.Put(ref(1), ast.StringTerm("new"))
			if v, _ := c.Get(ref(1)); !v.Equal(ast.StringTerm("new")) {
				t.Fatalf("overwrite: %v", v)
			}
			c.Put(ref(1), ast.IntNumberTerm(1))
			if got := len(c.Keys()); got != n-(n+4)/5 {
				t.Fatalf("%d keys", got)
			}

			// A pushed frame (a `with`) sees nothing of its parent, and
			// popping it restores the parent.
			c.Push()
			if v, u := c.Get(ref(1)); v != nil || u {
				t.Fatal("parent entry visible in pushed frame")
			}
			c.Put(ref(1), ast.StringTerm("inner"))
			c.Push()
			c.Pop()
			if v, _ := c.Get(ref(1)); !v.Equal(ast.StringTerm("inner")) {
				t.Fatal("inner frame lost")
			}
			c.Pop()
			check()
		})
	}

	// A cache back from the pool is empty.
	c := getVCache()
	c.Put(ast.MustParseRef("data.x"), ast.BooleanTerm(true))
	putVCache(c)
	c = getVCache()
	defer putVCache(c)
	if len(c.frames) != 1 || len(c.frames[0].entries) != 0 || len(c.refs) != 0 {
		t.Fatalf("pooled cache not reset: %+v", c)
	}
}

// A policy that caches many values of one rule (past the index threshold)
// and evaluates under `with` (pushed frames) decides as rego does.
func TestVCacheMatchesRego(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"authz.rego": `package warden.authz

score[k] := k * 2 if some k in numbers.range(1, 60)

total := sum([score[k] | some k in numbers.range(1, 60)])

inner := input.subject.sub

shadowed := x if x := inner with input.subject.sub as "zed"

decision := {"allow": total == 3660, "reason": sprintf("%v %v %v %v", [total, shadowed, inner, score[7]])}
`})
	e := newTestEngine(t, dir)
	d, err := e.Decide(context.Background(), toolCall())
	if err != nil {
		t.Fatal(err)
	}
	if !d.Allow || d.Reason != "3660 zed alice 14" {
		t.Fatalf("%+v", d)
	}
	c := e.cur.Load()
	v, _ := toolCall().Value()
	pq, err := rego.New(rego.Query(DecisionPath), rego.Compiler(c.compiler), rego.Store(c.store)).PrepareForEval(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rs, err := pq.Eval(context.Background(), rego.EvalParsedInput(v))
	if err != nil || rs[0].Expressions[0].Value.(map[string]any)["reason"] != d.Reason {
		t.Fatalf("rego %v %v", rs, err)
	}
}
