package policies

var tmpBuiltins = []string{"gt", "gte", "lt", "lte", "neq", "equal", "count", "regex.match", "sprintf", "is_number", "is_string", "is_object", "is_array", "is_boolean", "json.marshal", "to_number", "sort", "internal.member_2", "startswith", "time.weekday", "time.parse_rfc3339_ns", "plus", "minus", "concat", "object.get", "type_name", "object.keys", "format_int", "min", "array.concat"}
