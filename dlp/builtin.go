package dlp

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isAlnum(c byte) bool {
	return isDigit(c) || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// cardSpans finds payment card numbers. A candidate is a MAXIMAL run of
// ASCII digit groups joined by exactly one space or one dash ("4111 1111",
// "4111-1111", mixed separators allowed); it is a card when it holds 13 to
// 19 digits in total and passes the Luhn check as a whole. Runs are never
// split, so a sub-run of a longer run is not a card: splitting would turn
// every long number (order ids, IBAN bodies) into a source of false
// positives, and the contract says so. Letters next to a run do not stop
// detection ("card4111111111111111" is redacted): a missed card is worse
// than an over-eager redaction.
func cardSpans(text string) [][2]int {
	var spans [][2]int
	for i := 0; i < len(text); {
		if !isDigit(text[i]) {
			i++
			continue
		}
		start, end, digits := i, i, 0
		j := i
		for {
			for j < len(text) && isDigit(text[j]) {
				j++
				digits++
			}
			end = j
			if j+1 < len(text) && (text[j] == ' ' || text[j] == '-') && isDigit(text[j+1]) {
				j++
				continue
			}
			break
		}
		if digits >= 13 && digits <= 19 && luhn(text[start:end]) {
			spans = append(spans, [2]int{start, end})
		}
		i = end
	}
	return spans
}

// luhn checks the Luhn sum of the digits in s, ignoring separators.
func luhn(s string) bool {
	sum, double := 0, false
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if !isDigit(c) {
			continue
		}
		d := int(c - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// IBAN lengths per ISO 13616: 2 letters + 2 check digits + 11..30 BBAN
// characters.
const (
	ibanMin = 15
	ibanMax = 34
)

// ibanSpans finds IBANs (ISO 13616): two letters, two check digits and 11
// to 30 letters or digits, with mod-97 of the rearranged number equal to 1.
// Letters match in either case (a lower-cased IBAN leaks just as much; the
// checksum is case-independent). The country code is not checked against
// the registry: the checksum is what rules out ordinary words. Two written
// forms are recognised:
//
//   - compact: the whole alphanumeric word is the IBAN (it must not be part
//     of a longer run of ASCII letters and digits);
//   - grouped: blocks of exactly 4 characters separated by one space, the
//     last block 1 to 4 characters ("DE89 3704 0044 0532 0130 00"). When
//     more blocks follow an IBAN ("... 1332 from"), the longest valid
//     prefix that ends at a block boundary is taken.
func ibanSpans(text string) [][2]int {
	var spans [][2]int
	for i := 0; i < len(text); {
		if !isAlnum(text[i]) {
			i++
			continue
		}
		// i starts a word: text[i-1] is not alphanumeric.
		w := i
		for w < len(text) && isAlnum(text[w]) {
			w++
		}
		if n := w - i; n >= ibanMin && n <= ibanMax && ibanValid(text[i:w]) {
			spans = append(spans, [2]int{i, w})
			i = w
			continue
		}
		if w-i == 4 {
			if end := groupedIBAN(text, i); end > 0 {
				spans = append(spans, [2]int{i, end})
				i = end
				continue
			}
		}
		i = w
	}
	return spans
}

// groupedIBAN returns the end of the longest valid grouped IBAN starting at
// start (whose first block is known to be 4 characters), or 0.
func groupedIBAN(text string, start int) int {
	var buf [ibanMax]byte
	n := 0
	// ends[k] is the text offset after the block that brought the compact
	// length to lens[k].
	var ends, lens [ibanMax/4 + 2]int
	blocks := 0
	j := start
	for {
		b := j
		for j < len(text) && isAlnum(text[j]) {
			j++
		}
		size := j - b
		if size == 0 || size > 4 || n+size > ibanMax {
			break
		}
		copy(buf[n:], text[b:j])
		n += size
		ends[blocks], lens[blocks] = j, n
		blocks++
		if size < 4 || j+1 >= len(text) || text[j] != ' ' || !isAlnum(text[j+1]) {
			break
		}
		j++
	}
	for k := blocks - 1; k >= 0; k-- {
		if lens[k] >= ibanMin && ibanValid(buf[:lens[k]]) {
			return ends[k]
		}
	}
	return 0
}

// ibanValid checks shape and the mod-97 checksum of a compact IBAN.
func ibanValid[T ~string | ~[]byte](s T) bool {
	if len(s) < ibanMin || len(s) > ibanMax {
		return false
	}
	if !isLetter(s[0]) || !isLetter(s[1]) || !isDigit(s[2]) || !isDigit(s[3]) {
		return false
	}
	rem := 0
	for k := 0; k < len(s); k++ {
		c := s[(k+4)%len(s)] // the first four characters move to the end
		switch {
		case isDigit(c):
			rem = (rem*10 + int(c-'0')) % 97
		case isLetter(c):
			v := int(upper(c)-'A') + 10
			rem = (rem*100 + v) % 97
		default:
			return false
		}
	}
	return rem == 1
}

func isLetter(c byte) bool { return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') }

func upper(c byte) byte {
	if 'a' <= c && c <= 'z' {
		return c - 'a' + 'A'
	}
	return c
}
