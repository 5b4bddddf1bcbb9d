/* libpci reports fatal errors through a noreturn callback whose default calls exit(). These
 * wrappers turn such an error into a return value (setjmp/longjmp, kept in C so no C++ frame is
 * ever skipped), so one unreadable sysfs file becomes a reported error, not a dead agent. */
#ifndef AGENT_PROBES_PCI_GUARD_H
#define AGENT_PROBES_PCI_GUARD_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* libpci's header has no C++ linkage guard of its own. */
#include <pci/pci.h>

/* Receives every libpci warning (already formatted). */
typedef void (*agent_pci_warning_sink)(void* ctx, const char* message);

/* Allocates an access handle whose error/warning/debug callbacks are the guard's. */
struct pci_access* agent_pci_alloc(void);

/* Each returns 0 on success, -1 with libpci's error text in err[0..errlen). Warnings raised
 * during the call go to sink(ctx, ...) if sink is not NULL. */
int agent_pci_init(struct pci_access* a, char* err, size_t errlen, agent_pci_warning_sink sink, void* ctx);
int agent_pci_scan_bus(struct pci_access* a, char* err, size_t errlen, agent_pci_warning_sink sink, void* ctx);
int agent_pci_fill_info(struct pci_dev* d, int flags, char* err, size_t errlen, agent_pci_warning_sink sink,
                        void* ctx);
/* Looks up a name; *out is NULL when the database does not know it. */
int agent_pci_lookup(struct pci_access* a, char* buf, int size, int flags, int vendor, int device, const char** out,
                     char* err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
