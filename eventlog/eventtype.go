package eventlog

import (
	"encoding/json"
	"fmt"
)

// EventType is a TCG event type (TCG PC Client Platform Firmware Profile,
// section 10.4.1).
type EventType uint32

// Event types upstream knows; any other value makes a log malformed.
const (
	EvPrebootCert                EventType = 0x0
	EvPostCode                   EventType = 0x1
	EvUnused                     EventType = 0x2
	EvNoAction                   EventType = 0x3
	EvSeparator                  EventType = 0x4
	EvAction                     EventType = 0x5
	EvEventTag                   EventType = 0x6
	EvSCrtmContents              EventType = 0x7
	EvSCrtmVersion               EventType = 0x8
	EvCPUMicrocode               EventType = 0x9
	EvPlatformConfigFlags        EventType = 0xa
	EvTableOfDevices             EventType = 0xb
	EvCompactHash                EventType = 0xc
	EvIPL                        EventType = 0xd
	EvIPLPartitionData           EventType = 0xe
	EvNonhostCode                EventType = 0xf
	EvNonhostConfig              EventType = 0x10
	EvNonhostInfo                EventType = 0x11
	EvOmitBootDeviceEvents       EventType = 0x12
	EvEFIEventBase               EventType = 0x80000000
	EvEFIVariableDriverConfig    EventType = 0x80000001
	EvEFIVariableBoot            EventType = 0x80000002
	EvEFIBootServicesApplication EventType = 0x80000003
	EvEFIBootServicesDriver      EventType = 0x80000004
	EvEFIRuntimeServicesDriver   EventType = 0x80000005
	EvEFIGPTEvent                EventType = 0x80000006
	EvEFIAction                  EventType = 0x80000007
	EvEFIPlatformFirmwareBlob    EventType = 0x80000008
	EvEFIHandoffTables           EventType = 0x80000009
	EvEFIPlatformFirmwareBlob2   EventType = 0x8000000a
	EvEFIHandoffTables2          EventType = 0x8000000b
	EvEFIVariableBoot2           EventType = 0x8000000c
	EvEFIHCRTMEvent              EventType = 0x80000010
	EvEFIVariableAuthority       EventType = 0x800000e0
	EvEFISPDMFirmwareBlob        EventType = 0x800000e1
	EvEFISPDMFirmwareConfig      EventType = 0x800000e2
)

var eventTypeNames = map[EventType]string{
	EvPrebootCert:                "EV_PREBOOT_CERT",
	EvPostCode:                   "EV_POST_CODE",
	EvUnused:                     "EV_UNUSED",
	EvNoAction:                   "EV_NO_ACTION",
	EvSeparator:                  "EV_SEPARATOR",
	EvAction:                     "EV_ACTION",
	EvEventTag:                   "EV_EVENT_TAG",
	EvSCrtmContents:              "EV_S_CRTM_CONTENTS",
	EvSCrtmVersion:               "EV_S_CRTM_VERSION",
	EvCPUMicrocode:               "EV_CPU_MICROCODE",
	EvPlatformConfigFlags:        "EV_PLATFORM_CONFIG_FLAGS",
	EvTableOfDevices:             "EV_TABLE_OF_DEVICES",
	EvCompactHash:                "EV_COMPACT_HASH",
	EvIPL:                        "EV_IPL",
	EvIPLPartitionData:           "EV_IPL_PARTITION_DATA",
	EvNonhostCode:                "EV_NONHOST_CODE",
	EvNonhostConfig:              "EV_NONHOST_CONFIG",
	EvNonhostInfo:                "EV_NONHOST_INFO",
	EvOmitBootDeviceEvents:       "EV_OMIT_BOOT_DEVICE_EVENTS",
	EvEFIEventBase:               "EV_EFI_EVENT_BASE",
	EvEFIVariableDriverConfig:    "EV_EFI_VARIABLE_DRIVER_CONFIG",
	EvEFIVariableBoot:            "EV_EFI_VARIABLE_BOOT",
	EvEFIBootServicesApplication: "EV_EFI_BOOT_SERVICES_APPLICATION",
	EvEFIBootServicesDriver:      "EV_EFI_BOOT_SERVICES_DRIVER",
	EvEFIRuntimeServicesDriver:   "EV_EFI_RUNTIME_SERVICES_DRIVER",
	EvEFIGPTEvent:                "EV_EFI_GPT_EVENT",
	EvEFIAction:                  "EV_EFI_ACTION",
	EvEFIPlatformFirmwareBlob:    "EV_EFI_PLATFORM_FIRMWARE_BLOB",
	EvEFIHandoffTables:           "EV_EFI_HANDOFF_TABLES",
	EvEFIPlatformFirmwareBlob2:   "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
	EvEFIHandoffTables2:          "EV_EFI_HANDOFF_TABLES2",
	EvEFIVariableBoot2:           "EV_EFI_VARIABLE_BOOT2",
	EvEFIHCRTMEvent:              "EV_EFI_HCRTM_EVENT",
	EvEFIVariableAuthority:       "EV_EFI_VARIABLE_AUTHORITY",
	EvEFISPDMFirmwareBlob:        "EV_EFI_SPDM_FIRMWARE_BLOB",
	EvEFISPDMFirmwareConfig:      "EV_EFI_SPDM_FIRMWARE_CONFIG",
}

func (t EventType) known() bool { _, ok := eventTypeNames[t]; return ok }

// String returns the TCG name of the type ("EV_EVENT_TAG").
func (t EventType) String() string {
	if n, ok := eventTypeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("EventType(%#x)", uint32(t))
}

// MarshalJSON encodes the type by its TCG name, as upstream's type_name.
func (t EventType) MarshalJSON() ([]byte, error) {
	n, ok := eventTypeNames[t]
	if !ok {
		return nil, fmt.Errorf("%w: unknown event type %#x", ErrMalformed, uint32(t))
	}
	return json.Marshal(n)
}
