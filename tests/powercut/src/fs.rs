//! The FUSE adapter: answers the kernel's requests from the disk model.
//!
//! This module owns the translation between FUSE requests and [`Disk`]
//! calls, and the hidden control file. It must never keep file state of its
//! own (the model owns all of it), never cache attributes in the kernel (every
//! TTL is zero, no `keep_cache`, no writeback cache, no `direct_io` on data
//! files, so shared mappings see `pwrite`s), and never block: each request
//! takes the disk lock once and replies.
//!
//! POSIX record locks (`fcntl(F_SETLK)`, `F_GETLK`) and `flock` are not
//! implemented on purpose: fuser does not ask the kernel for
//! `FUSE_POSIX_LOCKS` or `FUSE_FLOCK_LOCKS`, so the kernel keeps those locks
//! itself, exactly as on a local file system.

use std::ffi::OsStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use fuser::{
    Errno as FuseErrno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

use crate::control;
use crate::model::{Attr, Disk, Errno, Kind, CONTROL_INO, ROOT_INO};

/// The name of the hidden control file in the root directory.
pub const CONTROL_NAME: &str = ".powercut";

/// The handle number of every open control file (disk handles start at 1).
const CONTROL_FH: u64 = 0;

/// Nothing is cached by the kernel beyond one request.
const TTL: Duration = Duration::ZERO;

/// The file system served over FUSE; clones share one disk.
#[derive(Clone, Debug, Default)]
pub struct PowerCutFs {
    disk: Arc<Mutex<Disk>>,
}

fn errno(e: Errno) -> FuseErrno {
    FuseErrno::from_i32(e)
}

fn file_attr(a: &Attr) -> FileAttr {
    let (kind, nlink) = match a.kind {
        Kind::File => (FileType::RegularFile, 1),
        Kind::Dir => (FileType::Directory, 2),
    };
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind,
        perm: a.perm,
        nlink,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn control_attr() -> FileAttr {
    file_attr(&Attr { ino: CONTROL_INO, kind: Kind::File, size: 0, perm: 0o600, mtime: SystemTime::UNIX_EPOCH })
}

fn is_control(parent: INodeNo, name: &OsStr) -> bool {
    parent.0 == ROOT_INO && name == CONTROL_NAME
}

fn dsync(flags: i32) -> bool {
    // O_SYNC includes the O_DSYNC bit on Linux.
    flags & libc::O_DSYNC != 0
}

impl PowerCutFs {
    /// A file system on a new, empty, powered disk.
    pub fn new() -> PowerCutFs {
        PowerCutFs::default()
    }

    /// The disk, locked. A panic in another request cannot leave the model
    /// half-changed in a way that matters to a test, so poison is ignored.
    pub fn disk(&self) -> MutexGuard<'_, Disk> {
        self.disk.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn entry(&self, result: Result<Attr, Errno>, reply: ReplyEntry) {
        match result {
            Ok(a) => reply.entry(&TTL, &file_attr(&a), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn empty(result: Result<(), Errno>, reply: ReplyEmpty) {
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }
}

impl Filesystem for PowerCutFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if is_control(parent, name) {
            return reply.entry(&TTL, &control_attr(), Generation(0));
        }
        let result = self.disk().lookup(parent.0, name);
        self.entry(result, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino.0 == CONTROL_INO {
            return reply.attr(&TTL, &control_attr());
        }
        match self.disk().attr(ino.0) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if ino.0 == CONTROL_INO {
            // `echo cut > .powercut` truncates first: nothing to truncate.
            return reply.attr(&TTL, &control_attr());
        }
        let mut disk = self.disk();
        // NOTE: modes, owners and times are accepted and not kept: the engine
        // depends on none of them.
        let result = match size {
            Some(len) => disk.set_len(ino.0, len).and_then(|()| disk.attr(ino.0)),
            None => disk.attr(ino.0),
        };
        match result {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let perm = (mode & !umask & 0o7777) as u16;
        let result = self.disk().create(parent.0, name, Kind::Dir, perm);
        self.entry(result, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        if is_control(parent, name) {
            return reply.error(FuseErrno::EPERM);
        }
        Self::empty(self.disk().remove(parent.0, name, false), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        Self::empty(self.disk().remove(parent.0, name, true), reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        if is_control(parent, name) || is_control(newparent, newname) {
            return reply.error(FuseErrno::EPERM);
        }
        if flags.intersects(RenameFlags::RENAME_EXCHANGE | RenameFlags::RENAME_WHITEOUT) {
            return reply.error(FuseErrno::EINVAL);
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        Self::empty(self.disk().rename(parent.0, name, newparent.0, newname, noreplace), reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if ino.0 == CONTROL_INO {
            // IMPORTANT: direct I/O, so every read asks for a fresh status and
            // every write reaches us as one command.
            return reply.opened(FileHandle(CONTROL_FH), FopenFlags::FOPEN_DIRECT_IO);
        }
        // IMPORTANT: no FOPEN_KEEP_CACHE: each open drops the kernel's cached
        // pages, so a file opened after a power cycle reads the disk again.
        match self.disk().open(ino.0, dsync(flags.0)) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        if ino.0 == CONTROL_INO {
            let text = control::status(&self.disk());
            let bytes = text.as_bytes();
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
            let end = start.saturating_add(size as usize).min(bytes.len());
            return reply.data(bytes.get(start..end).unwrap_or_default());
        }
        match self.disk().read(ino.0, fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let Ok(len) = u32::try_from(data.len()) else { return reply.error(FuseErrno::EINVAL) };
        if ino.0 == CONTROL_INO {
            let command = std::str::from_utf8(data).ok().and_then(control::parse);
            return match command {
                Some(c) => {
                    control::apply(&mut self.disk(), c);
                    reply.written(len)
                }
                None => reply.error(FuseErrno::EINVAL),
            };
        }
        match self.disk().write(ino.0, fh.0, offset, data, dsync(flags.0)) {
            Ok(()) => reply.written(len),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _owner: LockOwner, reply: ReplyEmpty) {
        // close() is not a sync: nothing becomes durable here.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if fh.0 != CONTROL_FH {
            self.disk().release(fh.0);
        }
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        if ino.0 == CONTROL_INO {
            return reply.ok();
        }
        Self::empty(self.disk().fsync_file(ino.0, fh.0), reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.disk().open(ino.0, false) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let entries = match self.disk().list(ino.0) {
            Ok(entries) => entries,
            Err(e) => return reply.error(errno(e)),
        };
        let dots = [(".".into(), ino.0, Kind::Dir), ("..".into(), ROOT_INO, Kind::Dir)];
        let all = dots.into_iter().chain(entries);
        for (i, (name, child, kind)) in all.enumerate().skip(usize::try_from(offset).unwrap_or(usize::MAX)) {
            let kind = if kind == Kind::Dir { FileType::Directory } else { FileType::RegularFile };
            if reply.add(INodeNo(child), i as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.disk().release(fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        Self::empty(self.disk().fsync_dir(ino.0, fh.0), reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        if let Err(e) = self.disk().check_power() {
            return reply.error(errno(e));
        }
        // A nominal 1 TiB of 4 KiB blocks, all free.
        let blocks = 1 << 28;
        reply.statfs(blocks, blocks, blocks, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        if ino.0 == CONTROL_INO {
            return reply.ok();
        }
        Self::empty(self.disk().attr(ino.0).map(|_| ()), reply);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        if is_control(parent, name) {
            return reply.error(FuseErrno::EEXIST);
        }
        let perm = (mode & !umask & 0o7777) as u16;
        let mut disk = self.disk();
        let result = disk
            .create(parent.0, name, Kind::File, perm)
            .and_then(|a| disk.open(a.ino, dsync(flags)).map(|fh| (a, fh)));
        match result {
            Ok((a, fh)) => reply.created(&TTL, &file_attr(&a), Generation(0), FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(e)),
        }
    }
}
