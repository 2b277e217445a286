package jsonx

// AppendCompact appends the valid JSON text js without white space outside
// strings (an event-stream event carries its data on one line). With
// escapeHTML it also escapes <, >, &, U+2028 and U+2029 as encoding/json
// does when it writes a json.RawMessage, so that text passed through comes
// out as it did when encoding/json wrote it.
func AppendCompact(b, js []byte, escapeHTML bool) []byte {
	inString, escaped := false, false
	for i := 0; i < len(js); i++ {
		c := js[i]
		if escapeHTML {
			switch {
			case c == '<' || c == '>' || c == '&':
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
				continue
			case c == 0xE2 && i+2 < len(js) && js[i+1] == 0x80 && js[i+2]&^1 == 0xA8:
				b = append(b, '\\', 'u', '2', '0', '2', hexDigits[js[i+2]&0xF])
				i += 2
				continue
			}
		}
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			continue
		}
		b = append(b, c)
	}
	return b
}
