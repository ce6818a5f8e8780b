package sshconf

import "strings"

// sshKeywords are the ssh_config keywords OpenSSH's ssh knows (9.2's
// readconf table, with its aliases, deprecated and unsupported names),
// Debian's GSSAPI ones, and a few of later releases, so that a config
// written for a newer ssh is not refused here. Anything else is ssh's "Bad
// configuration option", unless IgnoreUnknown names it.
var sshKeywords = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range strings.Fields(`
		protocol cipher fallbacktorsh globalknownhostsfile2 rhostsauthentication userknownhostsfile2
		useroaming usersh useprivilegedport afstokenpassing kerberosauthentication kerberostgtpassing
		rsaauthentication rhostsrsaauthentication compressionlevel
		gssapiauthentication gssapidelegatecredentials gssapikeyexchange gssapiclientidentity
		gssapiserveridentity gssapirenewalforcesrekey gssapitrustdns gssapikexalgorithms
		pkcs11provider smartcarddevice forwardagent forwardx11 forwardx11trusted forwardx11timeout
		exitonforwardfailure xauthlocation gatewayports passwordauthentication
		kbdinteractiveauthentication kbdinteractivedevices challengeresponseauthentication
		skeyauthentication tisauthentication pubkeyauthentication dsaauthentication
		hostbasedauthentication identityfile identityfile2 identitiesonly certificatefile
		addkeystoagent identityagent hostname hostkeyalias proxycommand port ciphers macs
		remoteforward localforward permitremoteopen user host match escapechar globalknownhostsfile
		userknownhostsfile connectionattempts batchmode checkhostip stricthostkeychecking compression
		tcpkeepalive keepalive numberofpasswordprompts syslogfacility loglevel logverbose
		dynamicforward preferredauthentications hostkeyalgorithms casignaturealgorithms bindaddress
		bindinterface clearallforwardings enablesshkeysign verifyhostkeydns
		nohostauthenticationforlocalhost rekeylimit connecttimeout addressfamily serveraliveinterval
		serveralivecountmax sendenv setenv controlpath controlmaster controlpersist hashknownhosts
		include tunnel tunneldevice localcommand permitlocalcommand remotecommand visualhostkey
		kexalgorithms ipqos requesttty sessiontype stdinnull forkafterauthentication proxyusefdpass
		canonicaldomains canonicalizefallbacklocal canonicalizehostname canonicalizemaxdots
		canonicalizepermittedcnames streamlocalbindmask streamlocalbindunlink revokedhostkeys
		fingerprinthash updatehostkeys hostbasedacceptedalgorithms hostbasedkeytypes
		pubkeyacceptedalgorithms pubkeyacceptedkeytypes ignoreunknown proxyjump securitykeyprovider
		knownhostscommand requiredrsasize
		channeltimeout enableescapecommandline obscurekeystroketiming tag refuseconnection
	`) {
		m[k] = true
	}
	return m
}()

// badOption is ssh's answer to a keyword it does not know, unless an
// IgnoreUnknown seen so far in a block that applies names it.
func (st *evalState) badOption(kw string) bool {
	if sshKeywords[kw] {
		return false
	}
	if ign := st.opts["ignoreunknown"]; len(ign) > 0 && matchPatternList(kw, ign[0], true) == 1 {
		return false
	}
	return true
}
