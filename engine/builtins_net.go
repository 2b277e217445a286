package engine

import (
	"net/netip"
)

// bCIDRContains reports whether the first CIDR contains the second operand,
// an IP address or a CIDR. net/netip keeps the engine free of package net.
func bCIDRContains(_ *evalState, args []Value) (Value, error) {
	cidr, other, err := twoStrings(args)
	if err != nil {
		return nil, err
	}
	outer, err := netip.ParsePrefix(cidr)
	if err != nil {
		return nil, &Error{Code: CodeBuiltinError, Message: "invalid CIDR " + cidr}
	}
	outer = outer.Masked()
	if addr, err := netip.ParseAddr(other); err == nil {
		return Bool(prefixContains(outer, addr)), nil
	}
	inner, err := netip.ParsePrefix(other)
	if err != nil {
		return nil, &Error{Code: CodeBuiltinError, Message: "invalid CIDR or IP " + other}
	}
	inner = inner.Masked()
	// Contained when both the first and the last address are.
	return Bool(prefixContains(outer, inner.Addr()) && prefixContains(outer, lastAddr(inner))), nil
}

func prefixContains(p netip.Prefix, a netip.Addr) bool {
	if p.Addr().Is4() && a.Is4In6() {
		a = a.Unmap()
	}
	if p.Addr().Is4In6() && a.Is4() {
		a = netip.AddrFrom16(a.As16())
	}
	return p.Contains(a)
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func bCIDRIsValid(_ *evalState, args []Value) (Value, error) {
	s, ok := args[0].(stringValue)
	if !ok {
		return valFalse, nil
	}
	_, err := netip.ParsePrefix(string(s))
	return Bool(err == nil), nil
}

func bCIDRIntersects(_ *evalState, args []Value) (Value, error) {
	a, b, err := twoStrings(args)
	if err != nil {
		return nil, err
	}
	pa, err := netip.ParsePrefix(a)
	if err != nil {
		return nil, &Error{Code: CodeBuiltinError, Message: "invalid CIDR " + a}
	}
	pb, err := netip.ParsePrefix(b)
	if err != nil {
		return nil, &Error{Code: CodeBuiltinError, Message: "invalid CIDR " + b}
	}
	pa, pb = pa.Masked(), pb.Masked()
	return Bool(prefixContains(pa, pb.Addr()) || prefixContains(pb, pa.Addr())), nil
}
