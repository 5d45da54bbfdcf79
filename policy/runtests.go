package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/lineage"
)

// ErrNoTests is returned by RunTests when the directory holds no test rules:
// pointing CI at the wrong directory must not pass silently.
var ErrNoTests = errors.New("no tests found (test rules are named test_* in *_test.rego files)")

// RunTests runs the Rego tests under dir the way `opa test dir` does: every
// .rego file (tests included) and every .json/.yaml data file is loaded,
// rules named test_* are evaluated, and a report is written to w (with
// print() output, and with the trace of notes and failures when verbose).
// Hidden files and directories are skipped, as the engine skips them.
// Like the engine, and unlike plain `opa test`, a failing built-in function
// is an error that fails the test.
//
// passed and failed count test cases; an error while evaluating a test
// counts as a failure. err is set when the tests could not run at all
// (unreadable files, a policy that does not compile) or none were found.
func RunTests(ctx context.Context, dir string, w io.Writer, verbose bool) (passed, failed int, err error) {
	modules, store, err := tester.LoadWithParserOptions([]string{dir}, skipFile(true),
		ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true})
	if err != nil {
		return 0, 0, fmt.Errorf("load %s: %w", dir, err)
	}
	txn, err := store.NewTransaction(ctx, storage.WriteParams)
	if err != nil {
		return 0, 0, fmt.Errorf("open store: %w", err)
	}
	defer store.Abort(ctx, txn)

	compiler := ast.NewCompiler().
		WithPathConflictsCheck(storage.NonEmpty(ctx, store, txn)).
		WithEnablePrintStatements(true).
		WithCapabilities(ast.CapabilitiesForThisVersion())
	runner := tester.NewRunner().
		SetCompiler(compiler).
		SetStore(store).
		SetModules(modules).
		CapturePrintOutput(true).
		EnableTracing(verbose).
		StackTraces(true).
		// As on the request path: a failing built-in is an error, not an
		// undefined rule.
		RaiseBuiltinErrors(true).
		SetTimeout(5 * time.Second)

	ch, err := runner.RunTests(ctx, txn)
	if err != nil {
		if errs, ok := errors.AsType[ast.Errors](err); ok {
			return 0, 0, fmt.Errorf("%s: %w", dir, compileError(errs))
		}
		return 0, 0, fmt.Errorf("%s: %w", dir, err)
	}

	counted := make(chan *tester.Result)
	go func() {
		defer close(counted)
		for r := range ch {
			p, f := count(r)
			passed += p
			failed += f
			if verbose {
				r.Trace = lineage.Filter(r.Trace, func(e *topdown.Event) bool {
					return e.Op == topdown.NoteOp || e.Op == topdown.FailOp
				})
			}
			counted <- r
		}
	}()
	reporter := tester.PrettyReporter{Output: w, Verbose: verbose, FailureLine: true}
	if err := reporter.Report(counted); err != nil {
		return passed, failed, fmt.Errorf("report: %w", err)
	}
	if passed+failed == 0 {
		return 0, 0, fmt.Errorf("%s: %w", dir, ErrNoTests)
	}
	return passed, failed, nil
}

// count mirrors `opa test`: a test with sub-results (test cases) counts its
// leaves; skipped (todo_test_) tests count as neither.
func count(r *tester.Result) (passed, failed int) {
	switch {
	case r.Skip:
		return 0, 0
	case r.Error != nil:
		return 0, 1
	case len(r.SubResults) > 0:
		for _, sr := range r.SubResults.Iter {
			if len(sr.SubResults) > 0 {
				continue
			}
			if sr.Fail {
				failed++
			} else {
				passed++
			}
		}
		return passed, failed
	case r.Fail:
		return 0, 1
	default:
		return 1, 0
	}
}
