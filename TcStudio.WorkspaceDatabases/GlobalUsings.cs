global using TcStudio.SystemDatabase;
global using TcStudio.SystemDatabase.Security;
