package api

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/simplescope/simplescope/internal/testutil"
)

// capiDoc is docs/capi.md as the tests read it: per method, the field names of its request and
// response tables (first column, in backquotes), and the common request fields.
type capiDoc struct {
	methods  map[string]*methodDoc
	order    []string
	common   []string // fields every request may carry
	specs    []string // fields of the method specs (evaluate's and inspect's methods[])
	problems []string
}

type methodDoc struct {
	request, response []string
	hasReq, hasResp   bool
}

var (
	methodHeading = regexp.MustCompile("^### `([^`]+)`\\s*$")
	fieldCell     = regexp.MustCompile("^\\|\\s*`([^`]+)`\\s*\\|")
)

func readCAPIDoc(t *testing.T) *capiDoc {
	t.Helper()
	path := filepath.Join(testutil.RepoRoot(), "docs", "capi.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the C API's contract: %v", err)
	}
	d := &capiDoc{methods: map[string]*methodDoc{}}
	var cur *methodDoc
	var fields *[]string // the table being read
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "## "):
			section, cur, fields = strings.TrimSpace(line[3:]), nil, nil
			switch section {
			case "Common request fields":
				fields = &d.common
			case "Method specs":
				fields = &d.specs
			}
		case strings.HasPrefix(line, "### "):
			m := methodHeading.FindStringSubmatch(line)
			if section != "Methods" || m == nil {
				d.problems = append(d.problems, "heading outside the method sections or not a method name: "+line)
				cur, fields = nil, nil
				continue
			}
			if d.methods[m[1]] != nil {
				d.problems = append(d.problems, "method documented twice: "+m[1])
			}
			cur = &methodDoc{}
			d.methods[m[1]] = cur
			d.order = append(d.order, m[1])
			fields = nil
		case cur != nil && strings.HasPrefix(line, "**Request**"):
			cur.hasReq, fields = true, &cur.request
		case cur != nil && strings.HasPrefix(line, "**Response**"):
			cur.hasResp, fields = true, &cur.response
		case fields != nil:
			if m := fieldCell.FindStringSubmatch(line); m != nil {
				*fields = append(*fields, m[1])
			}
		}
	}
	return d
}

// TestCAPIDocs: every method the C API serves has a section in docs/capi.md with a request and a
// response table, and every section names a method that is served.
func TestCAPIDocs(t *testing.T) {
	t.Setenv(DebugPanicEnv, "1") // so that Methods() lists every method
	d := readCAPIDoc(t)
	for _, p := range d.problems {
		t.Errorf("docs/capi.md: %s", p)
	}
	served := map[string]bool{}
	for _, m := range Methods() {
		served[m] = true
		md := d.methods[m]
		switch {
		case md == nil:
			t.Errorf("method %q is served (api.Methods) but docs/capi.md has no \"### `%s`\" section", m, m)
		case !md.hasReq || !md.hasResp:
			t.Errorf("docs/capi.md: method %q needs a **Request** and a **Response** table", m)
		}
	}
	for _, m := range d.order {
		if !served[m] {
			t.Errorf("docs/capi.md documents method %q, which api.Methods does not serve", m)
		}
	}
	if len(d.common) == 0 || len(d.specs) == 0 {
		t.Error("docs/capi.md: no table of common request fields or of method specs")
	}
}

// TestCAPIDocsFields: every field that a valid request of each method sends (the seed corpus of
// FuzzCall, as the Python binding sends them) and every field its response holds is in that
// method's table in docs/capi.md.
func TestCAPIDocsFields(t *testing.T) {
	d := readCAPIDoc(t)
	s := shared(t)
	for _, e := range corpusEntries() {
		t.Run(e.name, func(t *testing.T) {
			md := d.methods[e.method]
			if md == nil {
				t.Fatalf("method %q is not documented", e.method)
			}
			reqDoc := append(append(append([]string(nil), md.request...), d.common...), d.specs...)
			for _, f := range fieldPaths("", e.req) {
				if !documented(reqDoc, f) {
					t.Errorf("request field %q of %s is not in docs/capi.md (documented: %v)", f, e.method, md.request)
				}
			}
			sess := s
			if e.method == "load_data" {
				sess = nil
			}
			for _, f := range fieldPaths("", call(t, sess, e.method, e.req)) {
				if !documented(md.response, f) {
					t.Errorf("response field %q of %s is not in docs/capi.md (documented: %v)", f, e.method, md.response)
				}
			}
		})
	}
}

// fieldPaths names every field of a request or response: "k" for a key, "k.sub" for a key of a
// map, "k[].sub" for a key of the maps in a list. Arrays ({dtype, shape, data}) and tensor
// handles ({tensor, dtype, shape}) are leaves.
func fieldPaths(prefix string, v any) []string {
	var out []string
	switch x := v.(type) {
	case map[string]any:
		if prefix != "" && (isArrayMap(x) || isTensorRef(x)) {
			return nil
		}
		for k, sub := range x {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			out = append(out, p)
			out = append(out, fieldPaths(p, sub)...)
		}
	case []map[string]any:
		for _, m := range x {
			out = append(out, fieldPaths(prefix+"[]", m)...)
		}
	case []any:
		for _, m := range x {
			out = append(out, fieldPaths(prefix+"[]", m)...)
		}
	}
	sort.Strings(out)
	return dedupe(out)
}

func isArrayMap(m map[string]any) bool {
	_, d := m["dtype"]
	_, s := m["shape"]
	_, b := m["data"]
	return len(m) == 3 && d && s && b
}

func isTensorRef(m map[string]any) bool {
	_, id := m["tensor"]
	_, d := m["dtype"]
	_, s := m["shape"]
	return len(m) == 3 && id && d && s
}

func dedupe(s []string) []string {
	var out []string
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// documented reports whether path matches a documented name; "*" in a name stands for any one
// key (a key may hold dots: cache.blocks.1.hook_resid_post).
func documented(names []string, path string) bool {
	for _, n := range names {
		re := "^" + strings.ReplaceAll(regexp.QuoteMeta(n), `\*`, `[^\[\]]+`) + "$"
		if regexp.MustCompile(re).MatchString(path) {
			return true
		}
	}
	return false
}
