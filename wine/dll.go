package wine

import "encoding/binary"

// forwarderDLL returns an x86-64 PE DLL named dllName whose only export,
// export, forwards to target ("module.Function"). It has no code and no
// entry point: the loader resolves the forward.
func forwarderDLL(dllName, export, target string) []byte {
	const (
		fileAlign = 0x200
		sectAlign = 0x1000
		sectRVA   = 0x1000 // the one section (.rdata, the export directory)
		sectOff   = 0x200  // and where it is in the file, after the headers
	)
	le := binary.LittleEndian

	// The export directory, its three one-entry tables and the strings.
	e := make([]byte, 40)
	funcsRVA := sectRVA + len(e)
	e = append(e, make([]byte, 4)...)
	namesRVA := sectRVA + len(e)
	e = append(e, make([]byte, 4)...)
	ordsRVA := sectRVA + len(e)
	e = append(e, make([]byte, 2)...) // ordinal 0 (+ base 1)
	dllNameRVA := sectRVA + len(e)
	e = append(append(e, dllName...), 0)
	exportRVA := sectRVA + len(e)
	e = append(append(e, export...), 0)
	targetRVA := sectRVA + len(e)
	e = append(append(e, target...), 0)
	le.PutUint32(e[12:], uint32(dllNameRVA))
	le.PutUint32(e[16:], 1) // ordinal base
	le.PutUint32(e[20:], 1) // functions
	le.PutUint32(e[24:], 1) // names
	le.PutUint32(e[28:], uint32(funcsRVA))
	le.PutUint32(e[32:], uint32(namesRVA))
	le.PutUint32(e[36:], uint32(ordsRVA))
	// A function address inside the export directory is a forwarder string.
	le.PutUint32(e[funcsRVA-sectRVA:], uint32(targetRVA))
	le.PutUint32(e[namesRVA-sectRVA:], uint32(exportRVA))
	raw := (len(e) + fileAlign - 1) / fileAlign * fileAlign

	f := make([]byte, sectOff+raw)
	copy(f, "MZ")
	le.PutUint32(f[0x3c:], 0x40) // e_lfanew
	copy(f[0x40:], "PE\x00\x00")
	c := f[0x44:]                // COFF header
	le.PutUint16(c[0:], 0x8664)  // x86-64
	le.PutUint16(c[2:], 1)       // sections
	le.PutUint16(c[16:], 240)    // optional header size (PE32+)
	le.PutUint16(c[18:], 0x2022) // executable image, large address aware, DLL
	o := c[20:]                  // optional header
	le.PutUint16(o[0:], 0x20b)   // PE32+
	le.PutUint32(o[8:], uint32(raw))
	le.PutUint64(o[24:], 0x180000000) // image base
	le.PutUint32(o[32:], sectAlign)
	le.PutUint32(o[36:], fileAlign)
	le.PutUint16(o[40:], 6) // OS version 6.0
	le.PutUint16(o[48:], 6) // subsystem version 6.0
	le.PutUint32(o[56:], uint32(sectRVA+(len(e)+sectAlign-1)/sectAlign*sectAlign))
	le.PutUint32(o[60:], sectOff) // headers size
	le.PutUint16(o[68:], 3)       // console subsystem
	le.PutUint16(o[70:], 0x0160)  // high-entropy VA, dynamic base, NX
	le.PutUint64(o[72:], 0x100000)
	le.PutUint64(o[80:], 0x1000)
	le.PutUint64(o[88:], 0x100000)
	le.PutUint64(o[96:], 0x1000)
	le.PutUint32(o[108:], 16) // data directories
	le.PutUint32(o[112:], sectRVA)
	le.PutUint32(o[116:], uint32(len(e)))
	s := o[240:] // section header
	copy(s, ".rdata")
	le.PutUint32(s[8:], uint32(len(e)))
	le.PutUint32(s[12:], sectRVA)
	le.PutUint32(s[16:], uint32(raw))
	le.PutUint32(s[20:], sectOff)
	le.PutUint32(s[36:], 0x40000040) // initialized data, readable
	copy(f[sectOff:], e)
	return f
}
