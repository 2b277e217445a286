package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// decodePlan parses plan.json. Unknown statement or operand kinds are
// errors; structural checks (indexes, locals, depths) are left to validate.
func decodePlan(data []byte) (*planPolicy, error) {
	var p planPolicy
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("decoding plan: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("decoding plan: trailing data after the document")
	}
	return &p, nil
}

type rawStmt struct {
	Type string          `json:"type"`
	Stmt json.RawMessage `json:"stmt"`
}

// UnmarshalJSON decodes the {"stmts": [{"type": ..., "stmt": ...}]} form.
func (b *block) UnmarshalJSON(data []byte) error {
	var raw struct {
		Stmts []rawStmt `json:"stmts"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	b.Stmts = make([]stmt, len(raw.Stmts))
	for i, r := range raw.Stmts {
		s, err := newStmt(r.Type)
		if err != nil {
			return fmt.Errorf("statement %d: %w", i, err)
		}
		if len(r.Stmt) == 0 || bytes.Equal(r.Stmt, []byte("null")) {
			return fmt.Errorf("statement %d (%s): missing body", i, r.Type)
		}
		if err := json.Unmarshal(r.Stmt, s); err != nil {
			return fmt.Errorf("statement %d (%s): %w", i, r.Type, err)
		}
		b.Stmts[i] = s
	}
	return nil
}

func newStmt(kind string) (stmt, error) {
	switch kind {
	case "ReturnLocalStmt":
		return &returnLocalStmt{}, nil
	case "CallStmt":
		return &callStmt{}, nil
	case "CallDynamicStmt":
		return &callDynamicStmt{}, nil
	case "BlockStmt":
		return &blockStmt{}, nil
	case "BreakStmt":
		return &breakStmt{}, nil
	case "DotStmt":
		return &dotStmt{}, nil
	case "LenStmt":
		return &lenStmt{}, nil
	case "ScanStmt":
		return &scanStmt{}, nil
	case "NotStmt":
		return &notStmt{}, nil
	case "AssignIntStmt":
		return &assignIntStmt{}, nil
	case "AssignVarStmt":
		return &assignVarStmt{}, nil
	case "AssignVarOnceStmt":
		return &assignVarOnceStmt{}, nil
	case "ResetLocalStmt":
		return &resetLocalStmt{}, nil
	case "MakeNullStmt":
		return &makeNullStmt{}, nil
	case "MakeNumberIntStmt":
		return &makeNumberIntStmt{}, nil
	case "MakeNumberRefStmt":
		return &makeNumberRefStmt{}, nil
	case "MakeArrayStmt":
		return &makeArrayStmt{}, nil
	case "MakeObjectStmt":
		return &makeObjectStmt{}, nil
	case "MakeSetStmt":
		return &makeSetStmt{}, nil
	case "EqualStmt":
		return &equalStmt{}, nil
	case "NotEqualStmt":
		return &notEqualStmt{}, nil
	case "IsArrayStmt":
		return &isArrayStmt{}, nil
	case "IsObjectStmt":
		return &isObjectStmt{}, nil
	case "IsSetStmt":
		return &isSetStmt{}, nil
	case "IsDefinedStmt":
		return &isDefinedStmt{}, nil
	case "IsUndefinedStmt":
		return &isUndefinedStmt{}, nil
	case "ArrayAppendStmt":
		return &arrayAppendStmt{}, nil
	case "ObjectInsertStmt":
		return &objectInsertStmt{}, nil
	case "ObjectInsertOnceStmt":
		return &objectInsertOnceStmt{}, nil
	case "ObjectMergeStmt":
		return &objectMergeStmt{}, nil
	case "SetAddStmt":
		return &setAddStmt{}, nil
	case "WithStmt":
		return &withStmt{}, nil
	case "NopStmt":
		return &nopStmt{}, nil
	case "ResultSetAddStmt":
		return &resultSetAddStmt{}, nil
	}
	return nil, fmt.Errorf("unrecognized statement type %q", kind)
}

// UnmarshalJSON decodes {"type": "local"|"string_index"|"bool", "value": ...}.
func (o *operand) UnmarshalJSON(data []byte) error {
	var raw struct {
		Type  string          `json:"type"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	switch raw.Type {
	case "local":
		o.kind = opLocal
		return json.Unmarshal(raw.Value, &o.local)
	case "string_index":
		o.kind = opString
		return json.Unmarshal(raw.Value, &o.index)
	case "bool":
		o.kind = opBool
		return json.Unmarshal(raw.Value, &o.b)
	}
	return fmt.Errorf("unrecognized operand type %q", raw.Type)
}

// UnmarshalJSON accepts the canonical "index" key and the legacy "Index".
func (m *makeNumberRefStmt) UnmarshalJSON(data []byte) error {
	var raw struct {
		location
		Index       *int  `json:"index"`
		IndexLegacy *int  `json:"Index"`
		Target      local `json:"target"`
	}
	// encoding/json matches keys case-insensitively, so "Index" would land
	// in "index" too; decode the legacy key separately to keep precedence.
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(data, &keys); err != nil {
		return err
	}
	m.location, m.Target = raw.location, raw.Target
	for _, k := range []string{"index", "Index"} {
		if v, ok := keys[k]; ok {
			return json.Unmarshal(v, &m.Index)
		}
	}
	return fmt.Errorf("MakeNumberRefStmt without index")
}
