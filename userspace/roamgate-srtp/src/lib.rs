//! SRTP and SRTCP for the proxies' voice (RFC 3711, RFC 7714). Sans-IO:
//! a context takes a packet and returns the protected or unprotected one.
