package engine

import (
	"context"
	"encoding/json"
	"testing"
)

// sharedCase runs on the engine (through OPA's planner) and on OPA's
// topdown evaluator; both must produce the same outcome, and that outcome
// must be the one written in the case (want), so that a bug shared by the
// harness and both evaluators cannot pass silently.
type sharedCase struct {
	name   string
	module string // package x; the entrypoint is x/p
	input  string // JSON, empty for no input
	data   string // JSON object, empty for {}
	want   string // JSON result, "undefined", or "error <code>"
}

var sharedCases = []sharedCase{
	{name: "undefined vs false", module: `package x
p := input.missing`, input: `{}`, want: "undefined"},
	{name: "false is defined", module: `package x
p := input.a == 2`, input: `{"a": 1}`, want: `false`},
	{name: "default", module: `package x
default p := "deny"
p := "allow" if input.ok`, input: `{"ok": false}`, want: `"deny"`},
	{name: "complete rule conflict", module: `package x
p := 1 if input.a
p := 2 if input.b`, input: `{"a": true, "b": true}`, want: "error eval_conflict_error"},
	{name: "same value no conflict", module: `package x
p := 1 if input.a
p := 1 if input.b`, input: `{"a": true, "b": true}`, want: `1`},
	{name: "function conflict", module: `package x
f(x) := 1 if x > 0
f(x) := 2 if x > 1
p := f(input.n)`, input: `{"n": 5}`, want: "error eval_conflict_error"},
	{name: "object key conflict", module: `package x
p[k] := v if { some k, v in input.pairs[_] }`, input: `{"pairs": [{"a": 1}, {"a": 2}]}`, want: "error eval_conflict_error"},
	{name: "partial set ordering", module: `package x
p contains v if { some v in input.vals }`, input: `{"vals": ["b", 2, null, true, [1], {"k": 1}, "a", 1.5]}`, want: `[null,true,1.5,2,"a","b",[1],{"k":1}]`},
	{name: "else chain", module: `package x
p := "big" if { input.n > 100 } else := "medium" if { input.n > 10 } else := "small"`, input: `{"n": 50}`, want: `"medium"`},
	{name: "with input", module: `package x
q := input.v
p := x if { x := q with input.v as 42 }`, input: `{"v": 1}`, want: `42`},
	{name: "with data", module: `package x
q := data.cfg.limit
p := x if { x := q with data.cfg.limit as 7 }`, data: `{"cfg": {"limit": 3}}`, want: `7`},
	{name: "not", module: `package x
p if not input.blocked`, input: `{"blocked": false}`, want: `true`},
	{name: "every", module: `package x
p if { every x in input.xs { x > 0 } }`, input: `{"xs": [1, 2, 3]}`, want: `true`},
	{name: "every fails", module: `package x
p if { every x in input.xs { x > 0 } }`, input: `{"xs": [1, -2, 3]}`, want: "undefined"},
	{name: "comprehensions", module: `package x
p := {"a": [y | some x in input.xs; y := x * 2], "s": {x | some x in input.xs}, "o": {k: v | some k, v in input.o}}`, input: `{"xs": [3, 1, 3], "o": {"z": 1, "a": 2}}`, want: `{"a":[6,2,6],"o":{"a":2,"z":1},"s":[1,3]}`},
	{name: "membership", module: `package x
kv if "k", 1 in input.obj
p := ["a" in input.arr, "b" in input.set_like, kv]`, input: `{"arr": ["a"], "set_like": ["c"], "obj": {"k": 1}}`, want: `[true,false,true]`},
	{name: "object lookups dynamic key", module: `package x
p := data.tools[input.tool].risk`, input: `{"tool": "db"}`, data: `{"tools": {"db": {"risk": "high"}}}`, want: `"high"`},
	{name: "integer arithmetic", module: `package x
p := [1 + 2, 7 - 10, 6 * 7, 7 / 2, 8 / 2, 7 % 3, -7 % 3, abs(-4)]`, want: `[3,-3,42,3.5,4,1,-1,4]`},
	{name: "float arithmetic text", module: `package x
p := [0.1 + 0.2, 1 / 3, 2.5 * 4, 10 / 4, round(2.5), round(-2.5), ceil(1.2), floor(-1.2)]`, want: `[0.3,0.33333333333333333334,10,2.5,3,-3,2,-2]`},
	{name: "big integers", module: `package x
p := [9007199254740993 + 1, 18446744073709551616 * 2, 123456789012345678901234567890 - 1]`, want: `[9007199254740994,36893488147419103232,123456789012345678901234567889]`},
	{name: "divide by zero undefined", module: `package x
p := 1 / input.z`, input: `{"z": 0}`, want: "undefined"},
	{name: "exact decimal comparison", module: `package x
p := [0.1 < 0.10000000000000001, 1 == 1.0, 100 > 1e2, 1e-400 > 0, 12345678901234567890 > 12345678901234567889]`, want: `[true,true,false,true,true]`},
	{name: "cross type comparison", module: `package x
p := ["a" < 1, null < false, [1] > "z", {"a": 1} > [1]]`, want: `[false,true,true,true]`},
	{name: "count sum max min sort", module: `package x
p := [count(input.xs), sum(input.xs), max(input.xs), min(input.xs), sort(input.xs), count("héllo"), product([2, 3.5])]`, input: `{"xs": [3, 1.5, 2]}`, want: `[3,6.5,3,1.5,[1.5,2,3],5,7]`},
	{name: "string builtins", module: `package x
p := [concat("-", ["a", "b"]), contains("abc", "b"), startswith("abc", "a"), endswith("abc", "bc"), lower("ÀB"), upper("àb"), split("a,b,,c", ","), replace("aaa", "a", "b"), trim("  x ", " "), trim_space(" y "), trim_prefix("prefix", "pre"), trim_suffix("suffix", "fix")]`, want: `["a-b",true,true,true,"àb","ÀB",["a","b","","c"],"bbb","x","y","fix","suf"]`},
	{name: "unicode code points", module: `package x
p := [indexof("héllo", "l"), substring("héllo wörld", 1, 4), substring("abc", 1, -1), strings.reverse("añb"), indexof_n("aXbXc", "X")]`, want: `[2,"éllo","bc","bña",[1,3]]`},
	{name: "sprintf", module: `package x
p := [sprintf("%s has %d items", ["cart", 3]), sprintf("%v|%v|%v", [1.5, [1, "a"], {"k": true}]), sprintf("%.2f", [3.14159]), sprintf("%v", [null]), sprintf("%d", [12345678901234567890])]`, want: `["cart has 3 items","1.5|[1, \"a\"]|{\"k\": true}","3.14","null","12345678901234567890"]`},
	{name: "format_int and to_number", module: `package x
p := [format_int(255, 16), format_int(-8, 2), to_number("1.50"), to_number(true), to_number(null)]`, want: `["ff","-1000",1.50,1,0]`},
	{name: "regex", module: `package x
p := [regex.match("^[a-z]+$", input.s), regex.find_n("[0-9]+", "a1b22c333", 2), regex.split("[,;]", "a,b;c"), regex.replace("a1b2", "[0-9]", "#"), regex.is_valid("("), regex.find_all_string_submatch_n("(a)(b)?", "ab a", -1)]`, input: `{"s": "abc"}`, want: `[true,["1","22"],["a","b","c"],"a#b#",false,[["ab","a","b"],["a","a",""]]]`},
	{name: "dynamic regex", module: `package x
p := regex.match(input.pattern, input.s)`, input: `{"pattern": "^x{2,3}$", "s": "xxx"}`, want: `true`},
	{name: "invalid dynamic regex undefined", module: `package x
p := regex.match(input.pattern, "a")`, input: `{"pattern": "("}`, want: "undefined"},
	{name: "glob", module: `package x
p := [glob.match("*.example.com", ["."], "api.example.com"), glob.match("*.example.com", ["."], "a.b.example.com"), glob.match("**.example.com", ["."], "a.b.example.com"), glob.match("api-{v1,v2}-?", null, "api-v2-x"), glob.match("[a-c]*", [], "beta"), glob.match("[!a-c]*", [], "beta")]`, want: `[true,false,true,true,true,false]`},
	{name: "sets and objects", module: `package x
s1 := {1, 2, 3}
s2 := {2, 3, 4}
p := [s1 & s2, s1 | s2, s1 - s2, intersection({s1, s2}), union({s1, s2}), object.keys({"b": 1, "a": 2}), object.remove({"a": 1, "b": 2}, ["a"]), object.union({"a": {"x": 1}}, {"a": {"y": 2}}), object.filter({"a": 1, "b": 2}, {"b"}), object.get({"a": {"b": 1}}, ["a", "b"], 0), object.get({}, "k", "dflt")]`, want: `[[2,3],[1,2,3,4],[1],[2,3],[1,2,3,4],["a","b"],{"b":2},{"a":{"x":1,"y":2}},{"b":2},1,"dflt"]`},
	{name: "arrays", module: `package x
p := [array.concat([1], [2, 3]), array.slice([1, 2, 3, 4], 1, 3), array.slice([1, 2], -5, 10), array.reverse([1, 2, 3]), array.flatten([1, [2, [3]]])]`, want: `[[1,2,3],[2,3],[1,2],[3,2,1],[1,2,[3]]]`},
	{name: "types", module: `package x
p := [type_name(null), type_name(true), type_name(1), type_name("s"), type_name([]), type_name({}), type_name(set()), is_number(1.5), is_string(1), is_object({}), is_set(set()), is_array([]), is_boolean(false), is_null(null)]`, want: `["null","boolean","number","string","array","object","set",true,false,true,true,true,true,true]`},
	{name: "json and encodings", module: `package x
p := [json.marshal({"b": [1, "<"], "a": {1, 2}}), json.unmarshal("{\"n\": 1.50}"), json.is_valid("{"), base64.encode("hi?"), base64.decode("aGk/"), base64url.encode("hi?"), base64url.decode("aGk_"), hex.encode("hi"), hex.decode("6869"), urlquery.encode("a b&c"), urlquery.decode("a+b%26c"), urlquery.encode_object({"b": "2", "a": ["1", "x y"]})]`, want: `["{\"a\":[1,2],\"b\":[1,\"\\u003c\"]}",{"n":1.50},false,"aGk/","hi?","aGk_","hi?","6869","hi","a+b%26c","a b&c","a=1&a=x+y&b=2"]`},
	{name: "cidr", module: `package x
p := [net.cidr_contains("10.0.0.0/8", "10.1.2.3"), net.cidr_contains("10.0.0.0/8", "11.0.0.1"), net.cidr_contains("10.0.0.0/8", "10.2.0.0/16"), net.cidr_contains("2001:db8::/32", "2001:db8::1"), net.cidr_contains("10.0.0.0/16", "10.0.0.0/8")]`, want: `[true,false,true,true,false]`},
	{name: "time", module: `package x
t := time.parse_rfc3339_ns("2024-02-29T13:45:10Z")
p := [t, time.weekday(t), time.date(t), time.clock(t), time.add_date(t, 0, 1, 1), time.parse_ns("2006-01-02", "2024-03-01")]`, want: `[1709214310000000000,"Thursday",[2024,2,29],[13,45,10],1711806310000000000,1709251200000000000]`},
	{name: "numbers.range", module: `package x
p := [numbers.range(1, 4), numbers.range(2, -1), numbers.range_step(0, 10, 4)]`, want: `[[1,2,3,4],[2,1,0,-1],[0,4,8]]`},
	{name: "walk", module: `package x
p := [path | walk({"a": [1]}, [path, _])]`, want: `[[],["a"],["a",0]]`},
	{name: "non-string object keys", module: `package x
p := {1: "a", "b": 2, [1]: true}`, want: `{"1":"a","[1]":true,"b":2}`},
	{name: "partial object rule", module: `package x
p[k] := count(v) if { some k, v in input }`, input: `{"a": [1, 2], "b": []}`, want: `{"a":2,"b":0}`},
	{name: "type error is undefined", module: `package x
p := input.a + 1`, input: `{"a": "s"}`, want: "undefined"},
	{name: "nested rules and functions", module: `package x
risk(tool) := data.tools[tool].risk
high contains t if { some t, _ in data.tools; risk(t) == "high" }
p := {"high": high, "n": count(high)}`, data: `{"tools": {"a": {"risk": "high"}, "b": {"risk": "low"}, "c": {"risk": "high"}}}`, want: `{"high":["a","c"],"n":2}`},
	{name: "ref head rules", module: `package x
q.a.b := 1
q.a.c := 2 if input.on
p := q`, input: `{"on": true}`, want: `{"a":{"b":1,"c":2}}`},
	{name: "data and virtual merge", module: `package x
q := 1
p := data.y`, data: `{"y": {"stored": 1}}`, want: `{"stored":1}`},
	{name: "base and virtual documents", module: `package x
import data.x.sub
p := sub`, data: `{"x": {"sub": {"stored": 1}}}`, want: `{"stored":1}`},
	{name: "template strings", module: `package x
p := $"user {input.name} has {count(input.items)} items, flag={input.flag}, missing={input.nope}"`, input: `{"name": "ann", "items": [1, 2], "flag": null}`, want: `"user ann has 2 items, flag=null, missing=<undefined>"`},
	{name: "affix matches", module: `package x
p := [strings.any_prefix_match("payments.transfer", ["crm.", "payments."]), strings.any_suffix_match(["a.csv", "b.txt"], {".pdf"}), strings.split_n("a/b/c/d", "/", 2), strings.split_n("a/b/c", "/", -2)]`, want: `[true,false,["a","b"],["b","c"]]`},
	{name: "units", module: `package x
p := [units.parse_bytes("10KB"), units.parse_bytes("1.5MiB"), units.parse("250m"), units.parse("2Gi"), units.parse("1e3")]`, want: `[10000,1572864,0.2500000000,2147483648,1000]`},
	{name: "crypto and bits", module: `package x
p := [crypto.sha256("abc"), crypto.md5(""), crypto.hmac.sha256("msg", "key"), crypto.hmac.equal("a", "a"), bits.or(12, 3), bits.and(12, 10), bits.xor(5, 1), bits.negate(0), bits.lsh(1, 70), bits.rsh(1024, 3)]`, want: `["ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad","d41d8cd98f00b204e9800998ecf8427e","2d93cbc1be167bcb1637a4a23cbff01a7878f0c50ee833954ea5221bb1b8c628",true,15,8,4,-1,1180591620717411303424,128]`},
	{name: "object.subset", module: `package x
p := [object.subset({"a": {"b": 1, "c": 2}, "d": [1, 2, 3]}, {"a": {"b": 1}, "d": [2, 3]}), object.subset({1, 2}, {3}), object.subset([1, 2, 3], {3, 1}), object.subset([], set())]`, want: `[true,false,true,false]`},
	{name: "more cidr", module: `package x
p := [net.cidr_is_valid("10.0.0.0/33"), net.cidr_is_valid("fd00::/8"), net.cidr_intersects("10.0.0.0/8", "10.1.0.0/16"), net.cidr_intersects("10.0.0.0/16", "11.0.0.0/8")]`, want: `[false,true,true,false]`},
	{name: "semver", module: `package x
p := [semver.is_valid("v1.2.3-rc.1+build.5"), semver.is_valid("1.02.3"), semver.compare("1.2.3", "1.10.0"), semver.compare("1.0.0-alpha.10", "1.0.0-alpha.9"), semver.compare("1.0.0", "1.0.0-rc.1"), semver.compare("1.0.0-alpha", "1.0.0-alpha.1")]`, want: `[true,false,-1,1,1,-1]`},
	{name: "json.remove and json.filter", module: `package x
doc := {"a": {"b": 1, "c": [10, 20, 30]}, "d": "x", "e~f": true}
p := [json.remove(doc, ["a/c/1", "d"]), json.filter(doc, {"a/b", "e~0f"}), json.filter(doc, [["a", "c"]]), json.remove(doc, ["a", "a/b"])]`, want: `[{"a":{"b":1,"c":[10,30]},"e~f":true},{"a":{"b":1},"e~f":true},{"a":{"c":[10,20,30]}},{"d":"x","e~f":true}]`},
	{name: "urlquery.decode_object", module: `package x
p := urlquery.decode_object("a=1&b=x+y&a=2&c")`, want: `{"a":["1","2"],"b":["x y"],"c":[""]}`},
}

func TestSharedCases(t *testing.T) {
	ctx := context.Background()
	for _, tc := range sharedCases {
		t.Run(tc.name, func(t *testing.T) {
			modules := map[string]string{"x.rego": tc.module}
			data := map[string]any{}
			if tc.data != "" {
				dec := json.NewDecoder(stringsReader(tc.data))
				dec.UseNumber()
				if err := dec.Decode(&data); err != nil {
					t.Fatal(err)
				}
			}
			dv, err := FromGo(data)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Load(mustPlan(t, modules, "x/p"), dv)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			var input Value
			var opaInput any
			if tc.input != "" {
				if input, err = FromJSON([]byte(tc.input)); err != nil {
					t.Fatal(err)
				}
				opaInput = opaGo(input)
			}
			got := engineOutcome(ctx, p, "x/p", input)
			oracle := newOPAOracle(t, modules, data, "x/p").eval(ctx, opaInput)
			if got.defined {
				got.result = normalizeJSON(t, got.result)
			}
			if oracle.defined {
				oracle.result = normalizeJSON(t, oracle.result)
			}
			if got != oracle {
				t.Errorf("engine and OPA disagree:\nengine: %v\nOPA:    %v", got, oracle)
			}
			want := tc.want
			if want != "undefined" && len(want) < 6 || want[:6] != "error " && want != "undefined" {
				want = normalizeJSON(t, want)
			}
			if got.String() != want {
				t.Errorf("engine result differs from the case:\ngot:  %v\nwant: %v", got, want)
			}
		})
	}
}
