package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// Package and rule paths Warden reads.
const (
	PackagePath  = "data.warden.authz"
	DecisionPath = PackagePath + ".decision"
	AllowPath    = PackagePath + ".allow"
	// VisiblePath, when the policy defines it, decides which items of a
	// list result (tools/list, prompts/list, resources/list,
	// resources/templates/list) the caller sees; see Engine.Visible.
	VisiblePath = PackagePath + ".visible"
)

var (
	decisionRef = ast.MustParseRef(DecisionPath)
	allowRef    = ast.MustParseRef(AllowPath)
	visibleRef  = ast.MustParseRef(VisiblePath)
)

// loaded is what one read of the policy source produced, before compiling.
type loaded struct {
	modules  map[string]*ast.Module // keyed by path relative to the root
	docs     map[string]any         // the data document
	revision string
	files    []string // module names, sorted
}

// source reads policy and data files: the OS directory dir, or fsys when
// it is set (the embedded default), rooted at dir.
type source struct {
	fsys fs.FS
	dir  string
	name string // of an fsys other than the default
}

func (s source) String() string {
	if s.name != "" {
		return s.name
	}
	if s.fsys != nil {
		return "embedded default policy"
	}
	return s.dir
}

// skipFile tells the loader which files are not part of the policy:
// hidden files and directories (editor swap files, and the ..data and
// ..<timestamp> entries of a Kubernetes ConfigMap volume, which would
// otherwise load every file twice), tests (run by `warden policy test`,
// never part of a decision), and anything that is not Rego, JSON or YAML.
func skipFile(tests bool) loader.Filter {
	return func(_ string, info fs.FileInfo, depth int) bool {
		name := info.Name()
		if depth > 0 && strings.HasPrefix(name, ".") {
			return true
		}
		if info.IsDir() {
			return false
		}
		if !tests && strings.HasSuffix(name, "_test.rego") {
			return true
		}
		switch filepath.Ext(name) {
		case ".rego", ".json", ".yaml", ".yml":
			return false
		}
		return true
	}
}

// read loads every policy and data file under the source (Rego v1 syntax).
// Data files land under data at their directory's path, as with `opa run`:
// <dir>/data.json is the root, <dir>/teams/data.yaml is data.teams.
func (s source) read(tests bool) (*loaded, error) {
	fl := loader.NewFileLoader().WithRegoVersion(ast.RegoV1)
	if s.fsys != nil {
		fl = fl.WithFS(s.fsys)
	}
	res, err := fl.Filtered([]string{s.dir}, skipFile(tests))
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	l := &loaded{modules: make(map[string]*ast.Module, len(res.Modules)), docs: res.Documents}
	h := sha256.New()
	names := make([]string, 0, len(res.Modules))
	raw := make(map[string][]byte, len(res.Modules))
	for _, f := range res.Modules {
		name := f.Name
		if rel, err := filepath.Rel(s.dir, f.Name); err == nil {
			name = filepath.ToSlash(rel)
		}
		l.modules[name] = f.Parsed
		raw[name] = f.Raw
		names = append(names, name)
	}
	// The revision covers exactly what was parsed, so a file changed
	// between two reads can never be reported under the other's revision.
	slices.Sort(names)
	l.files = names
	for _, n := range names {
		fmt.Fprintf(h, "module %q %d\n", n, len(raw[n]))
		h.Write(raw[n])
	}
	data, err := json.Marshal(l.docs) // map keys are sorted: canonical
	if err != nil {
		return nil, fmt.Errorf("load: encode data: %w", err)
	}
	fmt.Fprintf(h, "data %d\n", len(data))
	h.Write(data)
	l.revision = "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
	return l, nil
}

// compiled is one revision ready to evaluate. It is immutable once built,
// so Decide reads it through an atomic pointer without locks.
type compiled struct {
	revision string
	source   string
	loadedAt time.Time
	modules  int
	// files are the module file names, relative to the policy directory.
	files []string

	compiler *ast.Compiler
	store    storage.Store
	// decision is set when the policy defines data.warden.authz.decision,
	// allow when it defines data.warden.authz.allow; at least one is.
	decision *query
	allow    *query
	// visible is set when the policy defines data.warden.authz.visible.
	visible *query
	// memo remembers decisions when the policy qualifies (see memo.go);
	// nil otherwise. It belongs to this revision and goes with it.
	memo       *memo
	memoFields mcpFields
	memoReason string
	// needs is what of the input the policy can read.
	needs Needs
}

// query is a compiled query `result = <path>`, prepared once per revision.
type query struct {
	path string
	body ast.Body
	qc   ast.QueryCompiler
}

// resultVar is the variable the queries bind the answer to.
var resultVar = ast.Var("result")

var errNoDecisionRule = errors.New("the policy defines neither " + DecisionPath + " nor " + AllowPath +
	" (is the package name `warden.authz`?)")

// compile type-checks the modules and compiles the decision queries once,
// so that a request pays only for evaluation.
func compile(ctx context.Context, l *loaded) (*compiled, error) {
	// Data is stored as AST values: policies that read data (a group to
	// tools map) then skip a Go-to-AST conversion on every request.
	store := inmem.NewFromObjectWithOpts(l.docs, inmem.OptReturnASTValuesOnRead(true))
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	defer store.Abort(ctx, txn)

	compiler := ast.NewCompiler().
		// print() is for `warden policy test`; in the request path it is
		// compiled away.
		WithEnablePrintStatements(false).
		// A rule and a data file defining the same path is an error, as in
		// `opa run`, rather than one silently shadowing the other.
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn))
	compiler.Compile(l.modules)
	if compiler.Failed() {
		return nil, compileError(compiler.Errors)
	}

	c := &compiled{revision: l.revision, modules: len(l.modules), files: l.files, compiler: compiler, store: store}
	prepare := func(path string) (*query, error) {
		qc := compiler.QueryCompiler()
		body, err := qc.Compile(ast.MustParseBody(string(resultVar) + " = " + path))
		if err != nil {
			return nil, fmt.Errorf("compile query %s: %w", path, err)
		}
		return &query{path: path, body: body, qc: qc}, nil
	}
	if len(compiler.GetRules(decisionRef)) > 0 {
		if c.decision, err = prepare(DecisionPath); err != nil {
			return nil, err
		}
	}
	if len(compiler.GetRules(allowRef)) > 0 {
		if c.allow, err = prepare(AllowPath); err != nil {
			return nil, err
		}
	}
	if c.decision == nil && c.allow == nil {
		return nil, errNoDecisionRule
	}
	if len(compiler.GetRules(visibleRef)) > 0 {
		if c.visible, err = prepare(VisiblePath); err != nil {
			return nil, err
		}
	}
	fields, ok, why := memoizable(compiler)
	if ok {
		c.memo = newMemo()
	}
	c.memoFields, c.memoReason = fields, why
	c.needs = inputNeeds(compiler)
	return c, nil
}

// compileError lists every compiler error as file:line:col: message, one a
// line, so an operator can go straight to each problem.
func compileError(errs ast.Errors) error {
	var b strings.Builder
	fmt.Fprintf(&b, "compile: %d error(s)", len(errs))
	for _, e := range errs {
		b.WriteString("\n  ")
		b.WriteString(e.Error())
	}
	return errors.New(b.String())
}

// Files returns the policy and data files New would load from dir, by
// path relative to dir (slash-separated), with their content: a candidate
// policy to send to a replay (policy/replay).
func Files(dir string) (map[string]string, error) {
	skip := skipFile(false)
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		depth := 0
		if rel != "." {
			depth = strings.Count(filepath.ToSlash(rel), "/") + 1
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if skip(p, info, depth) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("policy: no .rego or data files in %s", dir)
	}
	return files, nil
}
