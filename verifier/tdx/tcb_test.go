package tdx

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func comps(svns ...int) []tcbComponent {
	c := make([]tcbComponent, 16)
	for i, s := range svns {
		c[i].SVN = s
	}
	return c
}

func day(d int) time.Time { return time.Date(2024, 1, d, 0, 0, 0, 0, time.UTC) }

func level(sgx, tdx []tcbComponent, pcesvn int, date time.Time, status string, adv ...string) tcbLevel {
	return tcbLevel{TCB: tcb{SGX: sgx, PCESVN: pcesvn, TDX: tdx}, TCBDate: date, TCBStatus: status, AdvisoryIDs: adv}
}

func isvLevel(isvsvn int, date time.Time, status string, adv ...string) tcbLevel {
	return tcbLevel{TCB: tcb{ISVSVN: isvsvn}, TCBDate: date, TCBStatus: status, AdvisoryIDs: adv}
}

// testTCBInfo has, from the top: an UpToDate level needing TDX SVN 5 at
// index 2, an OutOfDate one needing 3, and a ConfigurationNeeded one
// needing 2 (with a lower PCESVN); module TDX_01 with an UpToDate level at
// ISVSVN 4 and an OutOfDate one at 2.
func testTCBInfo() *tcbInfo {
	return &tcbInfo{
		TCBLevels: []tcbLevel{
			level(comps(2, 2), comps(3, 0, 5), 11, day(20), stUpToDate),
			level(comps(2, 2), comps(3, 0, 3), 11, day(10), stOutOfDate, "INTEL-SA-2", "INTEL-SA-1"),
			level(comps(2, 2), comps(0, 0, 2), 5, day(5), stConfigurationNeeded, "INTEL-SA-3"),
		},
		TDXModuleIdentities: []tdxModuleIdentity{{
			ID: "tdx_01",
			TCBLevels: []tcbLevel{
				isvLevel(4, day(15), stUpToDate),
				isvLevel(2, day(8), stOutOfDate, "INTEL-SA-9"),
			},
		}},
	}
}

func testQE(status string) *enclaveIdentity {
	return &enclaveIdentity{TCBLevels: []tcbLevel{isvLevel(8, day(18), status, "INTEL-SA-QE"), isvLevel(4, day(3), stOutOfDate, "INTEL-SA-QE-OLD")}}
}

func svn(s ...byte) (v [16]byte) { copy(v[:], s); return v }

func TestTDXEvaluate(t *testing.T) {
	info := &PlatformInfo{TCBComponents: [16]byte{2, 2}, PCESVN: 11}
	tests := []struct {
		name    string
		info    *PlatformInfo
		qeSVN   uint16
		tee     [16]byte
		qe      *enclaveIdentity
		want    tcbEval
		wantErr error
	}{
		{"up to date", info, 8, svn(3, 0, 5), testQE(stUpToDate),
			tcbEval{stUpToDate, day(18), []string{"INTEL-SA-QE"}}, nil},
		{"platform out of date", info, 8, svn(3, 0, 4), testQE(stUpToDate),
			tcbEval{stOutOfDate, day(10), []string{"INTEL-SA-1", "INTEL-SA-2", "INTEL-SA-QE"}}, nil},
		{"QE out of date makes an up-to-date platform out of date", info, 5, svn(3, 0, 5), testQE(stUpToDate),
			tcbEval{stOutOfDate, day(3), []string{"INTEL-SA-QE-OLD"}}, nil},
		{"QE out of date with configuration needed", &PlatformInfo{TCBComponents: [16]byte{2, 2}, PCESVN: 5}, 5, svn(0, 0, 2), testQE(stUpToDate),
			tcbEval{stOutOfDateConfigNeeded, day(3), []string{"INTEL-SA-3", "INTEL-SA-QE-OLD"}}, nil},
		{"QE configuration needed does not change the status", info, 8, svn(3, 0, 5), testQE(stConfigurationNeeded),
			tcbEval{stUpToDate, day(18), []string{"INTEL-SA-QE"}}, nil},
		{"QE revoked", info, 8, svn(3, 0, 5), testQE(stRevoked),
			tcbEval{stRevoked, day(18), []string{"INTEL-SA-QE"}}, nil},
		// With a TDX module version (index 1) the first two SVNs are the
		// module's, evaluated against its identity.
		{"module up to date", info, 8, svn(4, 1, 5), testQE(stUpToDate),
			tcbEval{stUpToDate, day(15), []string{"INTEL-SA-QE"}}, nil},
		{"module out of date", info, 8, svn(3, 1, 5), testQE(stUpToDate),
			tcbEval{stOutOfDate, day(8), []string{"INTEL-SA-9", "INTEL-SA-QE"}}, nil},
		{"module ISVSVN below every level", info, 8, svn(1, 1, 5), testQE(stUpToDate), tcbEval{}, ErrTCBStatus},
		{"no module identity", info, 8, svn(4, 2, 5), testQE(stUpToDate), tcbEval{}, ErrTCBStatus},
		{"TDX SVN below every level", info, 8, svn(3, 0, 1), testQE(stUpToDate), tcbEval{}, ErrTCBStatus},
		{"SGX components below every level", &PlatformInfo{TCBComponents: [16]byte{1, 2}, PCESVN: 11}, 8, svn(3, 0, 5), testQE(stUpToDate), tcbEval{}, ErrTCBStatus},
		{"QE ISVSVN below every level", info, 3, svn(3, 0, 5), testQE(stUpToDate), tcbEval{}, ErrTCBStatus},
		{"unknown QE status", info, 8, svn(3, 0, 5), testQE("SWHardeningNeeded"), tcbEval{}, ErrTCBStatus},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tdxEvaluate(tc.info, tc.qeSVN, tc.tee, testTCBInfo(), tc.qe)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("tdxEvaluate = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestEvaluateTCBRelaunch covers the TDX 1.5 current-TCB evaluation.
func TestEvaluateTCBRelaunch(t *testing.T) {
	info := &PlatformInfo{TCBComponents: [16]byte{2, 2}, PCESVN: 11}
	col := &collateralSet{tcb: &tcbInfoItem{info: *testTCBInfo()}, qe: &qeIdentityItem{id: *testQE(stUpToDate)}}
	qeReport := [qeReportSize]byte{}
	qeReport[qeISVSVNOff] = 8
	tests := []struct {
		name          string
		launch, cur   [16]byte
		bodyType      uint16
		want, wantErr error
		wantStatus    string
	}{
		{name: "v5 TDX 1.0 ignores the current TCB", launch: svn(3, 0, 4), cur: svn(3, 0, 5), bodyType: bodyTypeTDX10, wantStatus: stOutOfDate},
		{name: "out of date at launch, up to date now", launch: svn(3, 0, 4), cur: svn(3, 0, 5), bodyType: bodyTypeTDX15, wantStatus: stTDRelaunchAdvised},
		{name: "out of date at launch and now", launch: svn(3, 0, 4), cur: svn(3, 0, 3), bodyType: bodyTypeTDX15, wantStatus: stOutOfDate},
		{name: "up to date at launch", launch: svn(3, 0, 5), cur: svn(3, 0, 5), bodyType: bodyTypeTDX15, wantStatus: stUpToDate},
		{name: "current TCB not supported", launch: svn(3, 0, 5), cur: svn(0, 0, 0), bodyType: bodyTypeTDX15, wantErr: ErrTCBStatus},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := &Quote{Version: quoteVersionV5, BodyType: tc.bodyType, QEReport: qeReport}
			q.Body.TEETCBSVN, q.Body.TEETCBSVN2 = tc.launch, tc.cur
			got, err := evaluateTCB(q, info, col)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("evaluateTCB = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || got.status != tc.wantStatus {
				t.Fatalf("evaluateTCB = %+v, %v; want %s", got, err, tc.wantStatus)
			}
		})
	}
	// A relaunch where configuration is needed says so.
	cfg := &PlatformInfo{TCBComponents: [16]byte{2, 2}, PCESVN: 5}
	col.tcb.info.TCBLevels[1].TCB.PCESVN = 5
	col.tcb.info.TCBLevels[1].TCBStatus = stOutOfDateConfigNeeded
	q := &Quote{Version: quoteVersionV5, BodyType: bodyTypeTDX15, QEReport: qeReport}
	q.Body.TEETCBSVN, q.Body.TEETCBSVN2 = svn(3, 0, 3), svn(0, 0, 2)
	if got, err := evaluateTCB(q, cfg, col); err != nil || got.status != stTDRelaunchAdvisedConfNeeded {
		t.Fatalf("evaluateTCB = %+v, %v", got, err)
	}
	// Revoked is terminal.
	col.qe = &qeIdentityItem{id: *testQE(stRevoked)}
	q.Body.TEETCBSVN = svn(3, 0, 5)
	if _, err := evaluateTCB(q, info, col); !errors.Is(err, ErrTCBStatus) {
		t.Fatalf("revoked: %v", err)
	}
}
