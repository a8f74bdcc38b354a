// Command health-engines judges objects with the two health engines that
// tidemark's users run, so that tidemark's tests ask the consumers' own code
// rather than a re-implementation of it (tests/argocd_health.rs):
//
//   - kstatus: status.Compute of sigs.k8s.io/cli-utils/pkg/kstatus/status,
//     the library itself (what Flux, kpt and `kubectl wait`-style tools use).
//   - Argo CD's Lua health checks: the scripts run in gopher-lua
//     (github.com/yuin/gopher-lua, Lua 5.1), the interpreter Argo CD embeds,
//     and the returned table is read with layeh.com/gopher-json, the encoder
//     Argo CD uses, at the versions argo-cd v3 pins.
//
// Argo CD's own package (github.com/argoproj/argo-cd/v3/util/lua) is not
// imported: it drags in Argo CD's API types, gRPC clients and the k8s.io
// replace directives of argo-cd's go.mod, which do not apply to a module that
// requires it. The few lines of glue around gopher-lua are written here to the
// contract of its VM.ExecuteHealthLua, read from argo-cd's util/lua:
//
//   - A fresh LState per run. Scripts wired through argocd-cm run with
//     `useOpenLibs` false by default (the request's openLibs): no standard
//     library is opened except package, base and table, plus a "safe os" of
//     time and date only. Argo CD registers that safe os under the *table*
//     module's name, which gopher-lua ignores as table is loaded already, so
//     no global os exists and require("os") alone yields the safe os. With
//     openLibs true every standard library is opened first, as for Argo CD's
//     built-in scripts. time and date here are gopher-lua's own (Argo CD's
//     are copies of them).
//   - The run is bounded by a context with a one-second timeout.
//   - The global actionParams is an empty table; the global obj is the object
//     converted as Argo CD's decodeValue does: JSON null (and anything
//     unknown) becomes nil, booleans and strings stay, every number
//     (float64, int, int32, int64) becomes a Lua number, arrays become
//     sequences (1-based), maps become tables keyed by string.
//   - The chunk is loaded with LoadString and called with PCall(0, MultRet);
//     a runtime error loses its Lua stack trace. The value on top of the stack
//     is the result: nil gives an empty health status; a table is
//     JSON-encoded with gopher-json and decoded with encoding/json into
//     {status, message} (an *json.UnmarshalTypeError, e.g. the "[]" of an
//     empty table, gives an empty health status); a status outside Healthy,
//     Progressing, Degraded, Suspended, Missing and Unknown becomes Unknown
//     with the message "Lua returned an invalid health status"; any other
//     type is the error "expect table output from Lua script, not <type>".
//
// Usage (one JSON document per line in and out, in the same order):
//
//	health-engines kstatus   objects            -> {"status","message"} | {"error"}
//	health-engines argocd    requests           -> {"status","message","returnLines"} | {"error"}
//	health-engines yaml      paths of YAML files -> the object as JSON | {"error"}
//
// An argocd request is {"script" | "scriptFile", "object" | "objectFile",
// "openLibs", "cover"}. "object" is decoded as client-go decodes an API
// response (integers int64, other numbers float64); "objectFile" is a YAML
// file read as Argo CD's health tests read testdata (sigs.k8s.io/yaml into a
// map; numbers float64), which is also what `yaml` prints. With "cover" the
// script is run a second time with each line that starts with `return`
// prefixed by a call that records its line number, and returnLines lists the
// lines reached; the two runs must agree.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	luajson "layeh.com/gopher-json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

// Argo CD's fixed texts (util/lua).
const (
	invalidHealthStatus = "Lua returned an invalid health status"
	scriptTimeout       = time.Second
	coverFunction       = "__tidemark_cover"
)

var validHealthStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: health-engines kstatus|argocd|yaml < input > output")
		os.Exit(2)
	}
	var handle func(line []byte) any
	switch os.Args[1] {
	case "kstatus":
		handle = kstatusLine
	case "argocd":
		handle = argocdLine
	case "yaml":
		handle = yamlLine
	default:
		fmt.Fprintf(os.Stderr, "health-engines: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
	in := bufio.NewReader(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	for {
		line, err := in.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			if e := enc.Encode(handle(line)); e != nil {
				fmt.Fprintln(os.Stderr, "health-engines:", e)
				os.Exit(1)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "health-engines:", err)
			os.Exit(1)
		}
	}
	if err := out.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, "health-engines:", err)
		os.Exit(1)
	}
}

type failure struct {
	Error string `json:"error"`
}

// decodeObject reads one object as client-go reads an API response into an
// Unstructured: integers int64, other numbers float64.
func decodeObject(data []byte) (map[string]any, error) {
	var obj map[string]any
	if err := utiljson.Unmarshal(data, &obj); err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, errors.New("not a JSON object")
	}
	return obj, nil
}

// --- kstatus -----------------------------------------------------------------

type kstatusResult struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func kstatusLine(line []byte) any {
	obj, err := decodeObject(line)
	if err != nil {
		return failure{err.Error()}
	}
	res, err := status.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		return failure{err.Error()}
	}
	return kstatusResult{Status: res.Status.String(), Message: res.Message}
}

// --- YAML as Argo CD's health tests read it ----------------------------------

func readYAMLObject(path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	obj := make(map[string]any)
	if err := yaml.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return obj, nil
}

func yamlLine(line []byte) any {
	obj, err := readYAMLObject(strings.TrimSpace(string(line)))
	if err != nil {
		return failure{err.Error()}
	}
	return obj
}

// --- Argo CD's Lua health checks ---------------------------------------------

type argocdRequest struct {
	Script     *string         `json:"script"`
	ScriptFile string          `json:"scriptFile"`
	Object     json.RawMessage `json:"object"`
	ObjectFile string          `json:"objectFile"`
	OpenLibs   bool            `json:"openLibs"`
	Cover      bool            `json:"cover"`
}

type argocdResult struct {
	Status      string `json:"status"`
	Message     string `json:"message"`
	ReturnLines []int  `json:"returnLines,omitempty"`
}

// healthStatus is the shape Argo CD decodes the returned table into
// (gitops-engine's health.HealthStatus).
type healthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

func argocdLine(line []byte) any {
	var req argocdRequest
	if err := json.Unmarshal(line, &req); err != nil {
		return failure{"bad request: " + err.Error()}
	}
	var script string
	switch {
	case req.Script != nil:
		script = *req.Script
	case req.ScriptFile != "":
		data, err := os.ReadFile(req.ScriptFile)
		if err != nil {
			return failure{err.Error()}
		}
		script = string(data)
	default:
		return failure{"bad request: no script or scriptFile"}
	}
	var obj map[string]any
	var err error
	switch {
	case len(req.Object) > 0:
		obj, err = decodeObject(req.Object)
	case req.ObjectFile != "":
		obj, err = readYAMLObject(req.ObjectFile)
	default:
		err = errors.New("bad request: no object or objectFile")
	}
	if err != nil {
		return failure{err.Error()}
	}
	hs, err := executeHealthLua(obj, script, req.OpenLibs, nil)
	if err != nil {
		return failure{err.Error()}
	}
	res := argocdResult{Status: hs.Status, Message: hs.Message}
	if req.Cover {
		reached := map[int]bool{}
		again, err := executeHealthLua(obj, instrument(script), req.OpenLibs, reached)
		if err != nil {
			return failure{"instrumented run: " + err.Error()}
		}
		if *again != *hs {
			return failure{fmt.Sprintf("instrumented run gave %+v, the script %+v", *again, *hs)}
		}
		for n := range reached {
			res.ReturnLines = append(res.ReturnLines, n)
		}
		sort.Ints(res.ReturnLines)
	}
	return res
}

// instrument prefixes every line that starts with `return` with a call of
// coverFunction(line number). A call statement before a `return` on the same
// line is valid Lua 5.1 and leaves `return` the last statement of its block.
func instrument(script string) string {
	lines := strings.Split(script, "\n")
	for i, l := range lines {
		t := strings.TrimLeft(l, " \t")
		if t == "return" || strings.HasPrefix(t, "return ") || strings.HasPrefix(t, "return(") {
			lines[i] = l[:len(l)-len(t)] + fmt.Sprintf("%s(%d) ", coverFunction, i+1) + t
		}
	}
	return strings.Join(lines, "\n")
}

// executeHealthLua runs script on obj to Argo CD's contract (see the package
// comment). reached, when not nil, collects the lines the instrumented script
// reports through coverFunction.
func executeHealthLua(obj map[string]any, script string, openLibs bool, reached map[int]bool) (*healthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, openSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return nil, fmt.Errorf("opening %s: %w", lib.name, err)
		}
	}
	l.PreloadModule(lua.OsLibName, loadSafeOs)

	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	l.SetContext(ctx)

	l.SetGlobal("actionParams", l.CreateTable(0, 0))
	l.SetGlobal("obj", toLua(l, obj))
	if reached != nil {
		l.SetGlobal(coverFunction, l.NewFunction(func(l *lua.LState) int {
			reached[l.CheckInt(1)] = true
			return 0
		}))
	}

	fn, err := l.LoadString(script)
	if err == nil {
		l.Push(fn)
		err = l.PCall(0, lua.MultRet, nil)
	}
	var apiErr *lua.ApiError
	if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
		apiErr.StackTrace = ""
	}
	if err != nil {
		return nil, err
	}

	returned := l.Get(-1)
	switch returned.Type() {
	case lua.LTNil:
		return &healthStatus{}, nil
	case lua.LTTable:
	default:
		return nil, fmt.Errorf("expect table output from Lua script, not %s", returned.Type().String())
	}
	encoded, err := luajson.Encode(returned)
	if err != nil {
		return nil, err
	}
	hs := &healthStatus{}
	if err := json.Unmarshal(encoded, hs); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return &healthStatus{}, nil
		}
		return nil, err
	}
	if !validHealthStatuses[hs.Status] {
		return &healthStatus{Status: "Unknown", Message: invalidHealthStatus}, nil
	}
	return hs, nil
}

// toLua converts a decoded object as Argo CD's decodeValue does.
func toLua(l *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case json.Number:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int:
		return lua.LNumber(v)
	case int32:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case []any:
		t := l.CreateTable(len(v), 0)
		for _, item := range v {
			t.Append(toLua(l, item))
		}
		return t
	case map[string]any:
		t := l.CreateTable(0, len(v))
		for k, item := range v {
			t.RawSetH(lua.LString(k), toLua(l, item))
		}
		return t
	}
	return lua.LNil
}

// safeOs holds gopher-lua's own os.time and os.date, the only two functions
// of Argo CD's safe os library.
var safeOs = func() map[string]lua.LGFunction {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	if err := l.CallByParam(lua.P{Fn: l.NewFunction(lua.OpenOs), NRet: 0, Protect: true}, lua.LString(lua.OsLibName)); err != nil {
		panic(err)
	}
	funcs := map[string]lua.LGFunction{}
	for _, name := range []string{"time", "date"} {
		fn, ok := l.GetField(l.GetGlobal(lua.OsLibName), name).(*lua.LFunction)
		if !ok || fn.GFunction == nil {
			panic("gopher-lua has no os." + name)
		}
		funcs[name] = fn.GFunction
	}
	return funcs
}()

// openSafeOs registers the safe os functions as Argo CD does: under the name
// of the table library, already loaded, which gopher-lua then leaves alone.
func openSafeOs(l *lua.LState) int {
	l.Push(l.RegisterModule(lua.TabLibName, safeOs))
	return 1
}

// loadSafeOs is the module require("os") returns.
func loadSafeOs(l *lua.LState) int {
	l.Push(l.SetFuncs(l.NewTable(), safeOs))
	return 1
}
